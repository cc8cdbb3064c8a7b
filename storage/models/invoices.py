"""Invoices of completed bookings, the per-year counters that number them without gaps, and
the booking reminders already queued (one row per booking and lead time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from storage.models.accounts import User
    from storage.models.bookings import Booking


class InvoiceCounter(Model):
    """The last number issued in a year; its row lock serialises numbering."""

    year = fields.IntField(primary_key=True)
    last_number = fields.IntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "invoice_counters"


class Invoice(Model):
    """One per completed booking; amounts, lines and both parties' details as issued."""

    id = fields.UUIDField(primary_key=True)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name=False, on_delete=fields.RESTRICT)
    client: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.RESTRICT)
    cleaner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.RESTRICT)
    year = fields.IntField()
    seq = fields.IntField()
    number = fields.CharField(max_length=32, unique=True)
    currency = fields.CharField(max_length=3)
    net_minor = fields.IntField()
    tax_minor = fields.IntField()
    total_minor = fields.IntField()
    tax_rate_bp = fields.IntField()
    lines: Any = fields.JSONField()
    seller: Any = fields.JSONField()
    buyer: Any = fields.JSONField()
    file_key = fields.CharField(max_length=255, null=True)
    issued_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)

    booking_id: UUID
    client_id: UUID
    cleaner_id: UUID

    class Meta:
        table = "invoices"


class BookingReminder(Model):
    """A reminder queued for a booking, `lead_s` before its start; the pair is unique."""

    id = fields.BigIntField(primary_key=True)
    booking: fields.ForeignKeyRelation[Booking] = fields.ForeignKeyField(
        "models.Booking", related_name=False, on_delete=fields.CASCADE)
    lead_s = fields.IntField()
    queued_at = fields.DatetimeField(auto_now_add=True)

    booking_id: UUID

    class Meta:
        table = "booking_reminders"
        unique_together = (("booking", "lead_s"),)
