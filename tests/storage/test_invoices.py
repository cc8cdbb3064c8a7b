"""Invoices against the real database: one per completed booking, numbered per year without a gap
or a duplicate even when many are issued at once, and for what the client paid."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import pytest
from tortoise.transactions import in_transaction

from core.errors import Conflict, NotFound
from core.invoices import PaymentNotSettled
from storage import bookings, invoices
from storage.files import file_store
from storage.models import Booking, Invoice, OutboxEvent, User
from tests.storage.test_bookings import (
    bookable_cleaner,
    make_user,
    request_for,
    starting_soon,
    tomorrow_at,
)


async def completed_booking(settings, *, cleaner: User | None = None, client: User | None = None) -> Booking:
    """A booking starting soon, taken through the whole day by its cleaner (payments off: nothing
    captured). Once completed it no longer holds the cleaner's time, so the next one may start soon too."""
    cleaner = cleaner or await bookable_cleaner(settings)
    client = client or await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, starting_soon(), "2.5"))
    await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)
    await bookings.mark_on_the_way(booking.id, actor=cleaner, settings=settings)
    await bookings.start_booking(booking.id, actor=cleaner, settings=settings)
    return await bookings.complete_booking(booking.id, actor=cleaner, settings=settings)


def a_year_of_its_own() -> int:
    """A year no other test issues invoices in, so its numbers start at 1."""
    return 3000 + secrets.randbelow(6000)


async def test_a_completed_booking_gets_one_numbered_invoice_for_what_was_paid(db, settings):
    # given a completed booking of 2.5 h at £20/h (payments off: the quoted price is what is paid)
    booking = await completed_booking(settings)
    year = a_year_of_its_own()
    # when it is invoiced, twice
    invoice = await invoices.issue_invoice(booking.id, settings=settings, now=datetime(year, 3, 1, tzinfo=UTC))
    again = await invoices.issue_invoice(booking.id, settings=settings, now=datetime(year, 3, 2, tzinfo=UTC))
    # then there is one invoice, the year's first, with the booking's lines adding up to the total
    assert again.id == invoice.id and await Invoice.filter(booking_id=booking.id).count() == 1
    assert invoice.number == f"{year}-000001"
    assert (invoice.net_minor, invoice.tax_minor, invoice.total_minor, invoice.tax_rate_bp) == (5000, 1000, 6000, 2000)
    assert [(line["quantity"], line["unit_minor"], line["amount_minor"]) for line in invoice.lines] == [
        ("2.5", 2000, 4250), ("1", None, 750)]
    assert invoice.buyer["service_address"] == booking.address
    assert invoice.seller["name"] == settings.invoice_seller_name
    # and nothing is announced until its PDF is attached, then once
    assert not await OutboxEvent.filter(type="invoice.issued", payload__contains={"booking_id": str(booking.id)}).exists()
    key = await file_store(settings).put(b"%PDF-1.3 test", prefix="invoices", extension=".pdf")
    assert await invoices.attach_pdf(invoice.id, file_key=key)
    assert not await invoices.attach_pdf(invoice.id, file_key="invoices/2026/01/" + "b" * 32 + ".pdf")
    issued = await OutboxEvent.filter(type="invoice.issued", payload__contains={"booking_id": str(booking.id)})
    assert [e.payload["number"] for e in issued] == [invoice.number]


async def test_invoices_issued_at_once_take_every_number_once_without_a_gap(db, settings):
    # given twelve completed bookings (two cleaners, six each, one after another)
    cleaners = [await bookable_cleaner(settings), await bookable_cleaner(settings)]
    client = await make_user(settings, "client")
    done = [await completed_booking(settings, cleaner=cleaners[i % 2], client=client) for i in range(12)]
    year = a_year_of_its_own()
    now = datetime(year, 6, 1, tzinfo=UTC)
    # when all of them are invoiced at the same time, each booking by two workers at once
    issued = await asyncio.gather(*(invoices.issue_invoice(b.id, settings=settings, now=now)
                                    for b in done + done))
    # then each booking has one invoice, and the year's numbers are exactly 1..12
    assert {i.booking_id for i in issued} == {b.id for b in done}
    assert len({i.id for i in issued}) == 12
    seqs = sorted(await Invoice.filter(year=year).values_list("seq", flat=True))
    assert seqs == list(range(1, 13))
    numbers = await Invoice.filter(year=year).values_list("number", flat=True)
    assert sorted(numbers) == [f"{year}-{n:06d}" for n in range(1, 13)]


async def test_a_number_taken_by_a_transaction_that_rolls_back_is_given_again(db, settings):
    # given a year's number taken inside a transaction that then fails
    year = a_year_of_its_own()
    with pytest.raises(RuntimeError):
        async with in_transaction() as tx:
            assert await invoices._next_number(tx, year) == 1
            raise RuntimeError("the invoice could not be written")
    # when a booking is invoiced that year
    booking = await completed_booking(settings)
    invoice = await invoices.issue_invoice(booking.id, settings=settings, now=datetime(year, 1, 5, tzinfo=UTC))
    # then it takes number 1: the failed attempt left no gap
    assert invoice.number == f"{year}-000001"


async def test_only_completed_bookings_are_invoiced(db, settings):
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(9)))
    await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)
    with pytest.raises(Conflict) as refused:
        await invoices.issue_invoice(booking.id, settings=settings)
    assert refused.value.code == "booking_not_completed"
    assert not isinstance(refused.value, PaymentNotSettled)
    assert not await Invoice.filter(booking_id=booking.id).exists()
    with pytest.raises(NotFound):
        await invoices.issue_invoice(booking.client_id, settings=settings)  # not a booking id


async def test_the_pdf_is_for_the_client_and_staff_only(db, settings):
    # given a completed booking whose invoice is not built yet
    store = file_store(settings)
    booking = await completed_booking(settings)
    client, cleaner = await User.get(id=booking.client_id), await User.get(id=booking.cleaner_id)
    staff, stranger = await make_user(settings, "admin"), await make_user(settings, "client")
    with pytest.raises(Conflict) as pending:
        await invoices.read_invoice_pdf(booking.id, actor=client, store=store)
    assert pending.value.code == "invoice_pending"
    # when its PDF is attached
    invoice = await invoices.issue_invoice(booking.id, settings=settings)
    key = await store.put(b"%PDF-1.3 test", prefix="invoices", extension=".pdf")
    await invoices.attach_pdf(invoice.id, file_key=key)
    # then the client and staff read it; the cleaner and a stranger are told there is no booking
    for reader in (client, staff):
        assert (await invoices.read_invoice_pdf(booking.id, actor=reader, store=store))[1] == b"%PDF-1.3 test"
    for outsider in (cleaner, stranger):
        with pytest.raises(NotFound):
            await invoices.read_invoice_pdf(booking.id, actor=outsider, store=store)
