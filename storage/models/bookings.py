"""Bookings, their transition timeline, and the Stripe records that pay for them.

`Booking.cleaner` points at the cleaner's user row: the database's foreign key goes to
cleaner_profiles (whose key is the same user id), but Tortoise cannot write a relation to a
model whose primary key is itself a relation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.models import Model

from core.ids import new_id

if TYPE_CHECKING:
    from storage.models.accounts import User
    from storage.models.supply import ServiceType


class Booking(Model):
    id = fields.UUIDField(primary_key=True, default=new_id)
    client: fields.ForeignKeyRelation[User] = fields.ForeignKeyField("models.User", related_name="client_bookings", on_delete=fields.RESTRICT)
    cleaner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField("models.User", related_name="cleaner_bookings", on_delete=fields.RESTRICT)
    service: fields.ForeignKeyRelation[ServiceType] = fields.ForeignKeyField("models.ServiceType", related_name=False, on_delete=fields.RESTRICT)
    state = fields.CharField(max_length=16)
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    hours = fields.DecimalField(max_digits=5, decimal_places=2, default=0)
    hourly_rate_minor = fields.IntField(default=0)
    subtotal_minor = fields.IntField(default=0)
    platform_fee_minor = fields.IntField(default=0)
    tax_minor = fields.IntField(default=0)
    amount_minor = fields.IntField(default=0)
    currency = fields.CharField(max_length=3, default="GBP")
    travel_buffer_minutes = fields.IntField(default=0)
    address = fields.TextField(default="")
    city = fields.CharField(max_length=100, null=True)  # for staff filters and reports
    lat = fields.FloatField(null=True)
    lng = fields.FloatField(null=True)
    notes = fields.TextField(default="")
    accepted_at = fields.DatetimeField(null=True)
    declined_at = fields.DatetimeField(null=True)
    expired_at = fields.DatetimeField(null=True)
    on_the_way_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    cancelled_at = fields.DatetimeField(null=True)
    disputed_at = fields.DatetimeField(null=True)
    cancelled_by = fields.CharField(max_length=16, null=True)
    cancel_reason = fields.TextField(null=True)
    cancellation_fee_minor = fields.IntField(default=0)
    late_cancellation = fields.BooleanField(default=False)
    counts_against_cleaner = fields.BooleanField(default=False)
    decline_reason = fields.TextField(null=True)
    dispute_reason = fields.TextField(null=True)
    reminder_sent_at = fields.DatetimeField(null=True)
    payment_intent_id = fields.CharField(max_length=255, null=True)
    payment_status = fields.CharField(max_length=32, default="none")
    captured_minor = fields.IntField(default=0)
    refunded_minor = fields.IntField(default=0)
    # What the client agreed to when booking; hours .. amount_minor above are the final price
    # once the cleaner completed with other hours (storage/migrations/0013_booking_adjustments.sql).
    quoted_hours = fields.DecimalField(max_digits=5, decimal_places=2, default=0)
    quoted_subtotal_minor = fields.IntField(default=0)
    quoted_tax_minor = fields.IntField(default=0)
    quoted_amount_minor = fields.IntField(default=0)
    held_minor = fields.IntField(default=0)  # what the card hold covers, incremental authorisations included
    capture_shortfall_minor = fields.IntField(default=0)  # final price the card would not cover
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    client_id: UUID
    cleaner_id: UUID
    service_id: str

    class Meta:
        table = "bookings"


class BookingTransition(Model):
    """One step of a booking's timeline; the first has no `from_state`."""

    id = fields.BigIntField(primary_key=True)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField("models.Booking", related_name="transitions", on_delete=fields.CASCADE)
    from_state = fields.CharField(max_length=16, null=True)
    to_state = fields.CharField(max_length=16)
    party = fields.CharField(max_length=16)
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField("models.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    reason = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "booking_transitions"


class PaymentCustomer(Model):
    user: fields.OneToOneRelation[User] = fields.OneToOneField("models.User", related_name=False, primary_key=True, on_delete=fields.CASCADE)
    stripe_customer_id = fields.CharField(max_length=255, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "payment_customers"


class PayoutAccount(Model):
    """A cleaner's Stripe Connect Express account and what Stripe last said it may do."""

    cleaner: fields.OneToOneRelation[User] = fields.OneToOneField("models.User", related_name=False, primary_key=True,
                                   on_delete=fields.CASCADE)
    stripe_account_id = fields.CharField(max_length=255, unique=True)
    charges_enabled = fields.BooleanField(default=False)
    payouts_enabled = fields.BooleanField(default=False)
    details_submitted = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "payout_accounts"


class StripeEvent(Model):
    """A webhook event received once; a redelivery of the same id is acknowledged and skipped."""

    id = fields.CharField(max_length=255, primary_key=True)
    type = fields.CharField(max_length=100)
    payload: Any = fields.JSONField()
    handled = fields.BooleanField()
    received_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "stripe_events"
