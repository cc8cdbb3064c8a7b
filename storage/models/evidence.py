"""Completion evidence: photos a cleaner uploads for a booking, and what the images job read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id

if TYPE_CHECKING:
    from storage.models.accounts import User
    from storage.models.bookings import Booking


class BookingEvidence(Model):
    """One photo. `storage_key` is the original until processed, then its EXIF-free copy."""

    id = fields.UUIDField(primary_key=True, default=new_id)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name="evidence", on_delete=fields.CASCADE)
    uploaded_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    storage_key = fields.CharField(max_length=300)
    content_type = fields.CharField(max_length=64)
    size_bytes = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    status = fields.CharField(max_length=16, default="processing")
    refused_reason = fields.TextField(null=True)
    width = fields.IntField(null=True)
    height = fields.IntField(null=True)
    captured_at = fields.DatetimeField(null=True)
    gps_lat = fields.FloatField(null=True)
    gps_lng = fields.FloatField(null=True)
    thumbnails: Any = fields.JSONField(default=dict)
    processed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    booking_id: UUID
    uploaded_by_id: UUID | None

    class Meta:
        table = "booking_evidence"
