"""Money follow-ups of bookings: each Stripe refund once, and settlements waiting for a retry."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from storage.models.accounts import User
    from storage.models.bookings import Booking


class BookingRefund(Model):
    """One refund as Stripe made it, keyed by Stripe's id, so a replayed answer counts once."""

    id = fields.CharField(max_length=255, primary_key=True)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name="refunds", on_delete=fields.CASCADE)
    amount_minor = fields.IntField()
    reason = fields.TextField(default="")
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    booking_id: UUID

    class Meta:
        table = "booking_refunds"


class SettleRetry(Model):
    """A booking whose capture, fee capture or release Stripe refused; retried with backoff."""

    booking: fields.OneToOneRelation[Booking] = fields.OneToOneField(
        "models.Booking", related_name=False, primary_key=True, on_delete=fields.CASCADE)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)  # None: gave up; staff follow up
    last_error = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    booking_id: UUID

    class Meta:
        table = "settle_retries"
