"""Completion evidence: photos a cleaner uploads for a booking, and what the images job read."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields

from core.ids import new_id
from storage.models.images import UploadedImage

if TYPE_CHECKING:
    from storage.models.accounts import User
    from storage.models.bookings import Booking


class BookingEvidence(UploadedImage):
    """One photo. `storage_key` is the original until processed, then its EXIF-free copy."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name="evidence", on_delete=fields.CASCADE)
    uploaded_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL)

    booking_id: UUID
    uploaded_by_id: UUID | None

    class Meta:
        table = "booking_evidence"
