"""The invoices worker against real JetStream, PostgreSQL and SMTP: a completed booking becomes
one invoice with a PDF, and the client receives it as an e-mail attachment."""

from __future__ import annotations

import asyncio
import io

import pypdf
from nats.aio.client import Client

from core.events import EventType
from core.ids import new_id
from jobs.email import email_worker
from jobs.invoices import invoice_booking, invoices_worker
from jobs.relay import relay_until_empty
from jobs.worker import Job, Worker
from storage import bookings
from storage.files import file_store
from storage.models import Invoice, OutboxEvent, User
from tests.fakes.smtp import SmtpFake
from tests.storage.test_bookings import bookable_cleaner, make_user, request_for, tomorrow_at
from tests.storage.test_invoices import completed_booking


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


async def run_until_idle(nc: Client, settings, spec) -> None:
    await relay_until_empty(nc, settings)
    await Worker(nc, settings, spec).run(asyncio.Event(), until_idle_s=1.0)


async def test_a_completed_booking_reaches_the_client_as_an_invoice_pdf_by_email(
        nc: Client, settings, smtp_fake: SmtpFake):
    # given SMTP, and a booking its cleaner has just completed
    smtp = settings.model_copy(update={"smtp_url": smtp_fake.url})
    booking = await completed_booking(settings)
    client = await User.get(id=booking.client_id)
    # when booking.completed travels outbox → relay → invoices worker
    await run_until_idle(nc, smtp, invoices_worker(smtp))
    # then the booking has its invoice, with a stored PDF that names it
    invoice = await Invoice.get(booking_id=booking.id)
    assert invoice.file_key is not None and invoice.file_key.startswith("invoices/")
    stored = await file_store(settings).get(invoice.file_key)
    assert stored.startswith(b"%PDF") and invoice.number in pdf_text(stored)
    # when invoice.issued travels on to the e-mail worker
    await run_until_idle(nc, smtp, email_worker(smtp))
    # then the client got one message with the invoice attached as a PDF that parses
    [message] = [m for m in smtp_fake.to(client.email) if invoice.number in m["Subject"]]
    assert message["Subject"] == f"Your cleaning is done: invoice {invoice.number}"
    [attachment] = [p for p in message.walk() if p.get_content_disposition() == "attachment"]
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == f"spotless-invoice-{invoice.number}.pdf"
    data = attachment.get_payload(decode=True)
    assert data.startswith(b"%PDF")
    text = pdf_text(data)
    assert invoice.number in text and "£60.00" in text and "VAT at 20%" in text
    assert client.name in text and booking.address in text
    # and the cleaner got no invoice
    cleaner = await User.get(id=booking.cleaner_id)
    assert not [m for m in smtp_fake.to(cleaner.email) if "invoice" in m["Subject"]]


async def test_a_booking_is_invoiced_once_however_many_events_say_so(db, settings):
    # given a completed booking, and the events that could each invoice it
    booking = await completed_booking(settings)
    payload = {"booking_id": str(booking.id), "state": "completed", "client_id": str(booking.client_id),
               "cleaner_id": str(booking.cleaner_id), "starts_at": booking.starts_at.isoformat(), "by": "system"}
    store = file_store(settings)
    # when the handler runs for booking.completed and two payment updates
    for event_type in (EventType.BOOKING_COMPLETED, EventType.BOOKING_PAYMENT_UPDATED,
                       EventType.BOOKING_PAYMENT_UPDATED):
        await invoice_booking(Job(new_id(), event_type, payload, 1), settings, store)
    # then there is one invoice, one PDF and one announcement
    [invoice] = await Invoice.filter(booking_id=booking.id)
    assert invoice.file_key is not None
    issued = await OutboxEvent.filter(type="invoice.issued", payload__contains={"booking_id": str(booking.id)})
    assert len(issued) == 1 and issued[0].payload["number"] == invoice.number


async def test_a_payment_update_of_an_unfinished_booking_invoices_nothing(db, settings):
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(9)))
    payload = {"booking_id": str(booking.id), "state": "requested", "client_id": str(client.id),
               "cleaner_id": str(cleaner.id), "starts_at": booking.starts_at.isoformat(), "by": "system"}
    await invoice_booking(Job(new_id(), EventType.BOOKING_PAYMENT_UPDATED, payload, 1), settings,
                          file_store(settings))
    assert not await Invoice.filter(booking_id=booking.id).exists()
