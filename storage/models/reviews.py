"""A client's review of a completed booking, the cleaner's one reply, and staff hiding it."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id

if TYPE_CHECKING:
    from storage.models.accounts import User
    from storage.models.bookings import Booking


class Review(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    booking: fields.OneToOneRelation[Booking] = fields.OneToOneField(
        "models.Booking", related_name="review", on_delete=fields.CASCADE)
    client: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE)
    cleaner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE)
    rating = fields.SmallIntField()
    text = fields.TextField(default="")
    reply = fields.TextField(null=True)
    replied_at = fields.DatetimeField(null=True)
    hidden_at = fields.DatetimeField(null=True)
    hidden_reason = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    booking_id: UUID
    client_id: UUID
    cleaner_id: UUID

    class Meta:
        table = "reviews"
