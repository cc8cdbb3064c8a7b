"""Invoice actions: issuing a completed booking's invoice under a gapless per-year number,
attaching its PDF, and handing the PDF to the people allowed to read it.

Numbering: the year's `invoice_counters` row is locked FOR UPDATE in the same transaction that
writes the invoice, so a number is taken exactly when its invoice commits and a rolled-back
attempt leaves no hole (a PostgreSQL sequence would). One invoice per booking, ever: the booking
row is locked first and the unique index on `invoices.booking_id` is the last line.
The PDF is built outside that transaction (jobs/invoices.py) and attached in a second one,
which also writes the `invoice.issued` outbox event.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.errors import Conflict, NotFound
from core.events import EventType
from core.ids import new_id
from core.invoices import (
    InvoiceError,
    invoice_amounts,
    invoice_number,
    is_invoiceable,
    may_read_invoice,
    paid_total,
)
from core.settings import Settings
from storage import outbox
from storage.files import FileStore
from storage.models import Booking, CleanerProfile, Invoice, ServiceType, User


async def _next_number(tx: BaseDBAsyncClient, year: int) -> int:
    """Take the next number of `year`; the counter row stays locked until `tx` ends."""
    await tx.execute_query(
        "INSERT INTO invoice_counters (year, last_number) VALUES ($1, 0) ON CONFLICT (year) DO NOTHING", [year])
    rows = await tx.execute_query_dict(
        "SELECT last_number FROM invoice_counters WHERE year = $1 FOR UPDATE", [year])
    number = int(rows[0]["last_number"]) + 1
    await tx.execute_query(
        "UPDATE invoice_counters SET last_number = $2, updated_at = now() WHERE year = $1", [year, number])
    return number


async def issue_invoice(booking_id: UUID, *, settings: Settings, now: datetime | None = None) -> Invoice:
    """The booking's invoice, numbered and written the first time; the same row every time after.

    NotFound for no such booking, Conflict `booking_not_completed` before the work is done,
    PaymentNotSettled while the payment is not captured (a capture in flight or being retried)."""
    now = now or utcnow()
    async with in_transaction() as tx:
        booking = await Booking.filter(id=booking_id).using_db(tx).select_for_update().first()
        if booking is None:
            raise NotFound("no such booking")
        existing = await Invoice.filter(booking_id=booking_id).using_db(tx).first()
        if existing is not None:
            return existing
        if not is_invoiceable(state=booking.state, completed_at=booking.completed_at):
            raise Conflict("a booking is invoiced once it is completed", code=InvoiceError.BOOKING_NOT_COMPLETED)
        total = paid_total(payment_status=booking.payment_status, captured_minor=booking.captured_minor,
                           amount_minor=booking.amount_minor)
        client = await User.filter(id=booking.client_id).using_db(tx).get()
        cleaner = await User.filter(id=booking.cleaner_id).using_db(tx).get()
        service = await ServiceType.filter(id=booking.service_id).using_db(tx).get()
        profile = await CleanerProfile.filter(user_id=booking.cleaner_id).using_db(tx).first()
        zone = ZoneInfo(profile.time_zone if profile else "UTC")
        amounts = invoice_amounts(
            total_minor=total, service_name=service.name, cleaner_name=cleaner.name, hours=booking.hours,
            hourly_rate_minor=booking.hourly_rate_minor, subtotal_minor=booking.subtotal_minor,
            platform_fee_minor=booking.platform_fee_minor, tax_minor=booking.tax_minor,
            tax_rate_bp=settings.booking_tax_rate_bp)
        seq = await _next_number(tx, now.year)
        return await Invoice.create(
            id=new_id(), booking_id=booking.id, client_id=booking.client_id, cleaner_id=booking.cleaner_id,
            year=now.year, seq=seq, number=invoice_number(now.year, seq), currency=booking.currency,
            net_minor=amounts.net_minor, tax_minor=amounts.tax_minor, total_minor=amounts.total_minor,
            tax_rate_bp=amounts.tax_rate_bp, lines=amounts.lines_json(),
            seller={"name": settings.invoice_seller_name, "address": settings.invoice_seller_address,
                    "vat_number": settings.invoice_seller_vat_number},
            buyer={"name": client.name, "email": client.email, "service_address": booking.address,
                   "service_date": booking.starts_at.astimezone(zone).date().isoformat(),
                   "booking_id": str(booking.id)},
            issued_at=now, using_db=tx)


async def attach_pdf(invoice_id: UUID, *, file_key: str) -> bool:
    """Record the invoice's PDF and announce the invoice; False when it already had one."""
    async with in_transaction() as tx:
        invoice = await Invoice.filter(id=invoice_id).using_db(tx).select_for_update().first()
        if invoice is None:
            raise NotFound("no such invoice")
        if invoice.file_key is not None:
            return False
        invoice.file_key = file_key
        await invoice.save(update_fields=["file_key"], using_db=tx)
        await outbox.enqueue(EventType.INVOICE_ISSUED, {
            "invoice_id": str(invoice.id), "booking_id": str(invoice.booking_id), "number": invoice.number,
            "client_id": str(invoice.client_id), "cleaner_id": str(invoice.cleaner_id),
            "total_minor": invoice.total_minor, "currency": invoice.currency}, using=tx)
    return True


async def get_invoice(invoice_id: UUID) -> Invoice:
    invoice = await Invoice.get_or_none(id=invoice_id)
    if invoice is None:
        raise NotFound("no such invoice")
    return invoice


async def read_invoice_pdf(booking_id: UUID, *, actor: User, store: FileStore) -> tuple[Invoice, bytes]:
    """The booking's invoice PDF for its client or staff; NotFound for everyone else (the booking's
    cleaner included), Conflict while there is no invoice yet."""
    booking = await Booking.get_or_none(id=booking_id)
    if booking is None or not may_read_invoice(user_id=str(actor.id), role=actor.role,
                                               client_id=str(booking.client_id)):
        raise NotFound("no such booking")
    invoice = await Invoice.get_or_none(booking_id=booking_id)
    if invoice is None or invoice.file_key is None:
        if not is_invoiceable(state=booking.state, completed_at=booking.completed_at):
            raise Conflict("a booking is invoiced once it is completed", code=InvoiceError.BOOKING_NOT_COMPLETED)
        raise Conflict("the invoice is being prepared; try again in a minute", code=InvoiceError.INVOICE_PENDING)
    return invoice, await store.get(invoice.file_key)
