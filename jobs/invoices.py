"""Invoice jobs: a completed booking gets its invoice (storage/invoices.py numbers it) and its
PDF, printed here with fpdf2 and kept in storage.files; attaching the PDF announces
`invoice.issued`, which the e-mail worker sends to the client with the PDF attached.

Idempotent twice over: by event id (the worker framework) and by booking (one invoice per
booking, ever; a PDF built twice is attached once and the spare file deleted). An invoice
states what was paid, so a booking whose capture is still in flight waits: `booking.completed`
is retried for a while, and the `booking.payment_updated` that follows a late capture issues it.
The PDF uses the PDF core fonts (Windows-1252): characters outside it are printed as their
closest unaccented form, or `?`.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from typing import Any
from uuid import UUID

from fpdf import FPDF

from core.bookings import BookingState
from core.errors import Conflict, NotFound
from core.events import EventType
from core.invoices import PaymentNotSettled, format_money, format_rate
from core.settings import Settings
from jobs.worker import Job, Poison, WorkerKind
from storage import invoices
from storage.files import FileStore, file_store
from storage.models import Invoice

log = logging.getLogger("spotless.jobs.invoices")

FILE_PREFIX = "invoices"
_INVOICED_STATES = {BookingState.COMPLETED, BookingState.DISPUTED}


_NO_DECOMPOSITION = {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "ı": "i", "Ħ": "H", "ħ": "h"}


def _printable(text: str) -> str:
    """`text` in what the core fonts can draw (Windows-1252)."""
    try:
        text.encode("cp1252")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for char in text:
        try:
            char.encode("cp1252")
            out.append(char)
        except UnicodeEncodeError:
            base = _NO_DECOMPOSITION.get(char) or "".join(
                c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            out.append(base if base and base.isascii() else "?")
    return "".join(out)


def render_pdf(invoice: Invoice) -> bytes:
    """The invoice as an A4 PDF; the same invoice always prints the same bytes."""
    seller: dict[str, Any] = invoice.seller
    buyer: dict[str, Any] = invoice.buyer
    money = lambda minor: _printable(format_money(minor, invoice.currency))  # noqa: E731

    pdf = FPDF(format="A4")
    pdf.core_fonts_encoding = "cp1252"  # the core fonts' own encoding: £ and € included
    pdf.set_creation_date(invoice.issued_at)
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.set_author(_printable(seller["name"]))
    pdf.set_creator("Spotless")
    pdf.set_margins(20, 20, 20)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    def line(text: str, *, size: float = 10, style: str = "", align: str = "L", h: float = 5) -> None:
        pdf.set_font("helvetica", style=style, size=size)
        pdf.multi_cell(width, h, _printable(text), align=align, new_x="LMARGIN", new_y="NEXT")

    line(seller["name"], size=16, style="B", h=8)
    line(seller["address"])
    if seller.get("vat_number"):
        line(f"VAT number: {seller['vat_number']}")
    pdf.ln(6)
    line(f"Invoice {invoice.number}", size=20, style="B", h=10)
    line(f"Date of issue: {invoice.issued_at.date().isoformat()}")
    line(f"Date of service: {buyer['service_date']}")
    line(f"Booking reference: {buyer['booking_id']}")
    pdf.ln(4)
    line("Billed to", style="B")
    line(buyer["name"])
    line(buyer["email"])
    line(f"Service address: {buyer['service_address']}")
    pdf.ln(6)

    columns = (width * 0.52, width * 0.12, width * 0.18, width * 0.18)
    pdf.set_font("helvetica", size=10)
    with pdf.table(col_widths=columns, text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
                   borders_layout="HORIZONTAL_LINES", line_height=6, first_row_as_headings=True) as table:
        table.row(("Description", "Qty", "Unit price", "Amount"))
        for item in invoice.lines:  # a long description wraps inside its column
            unit = money(item["unit_minor"]) if item["unit_minor"] is not None else ""
            table.row((_printable(item["description"]), item["quantity"], unit, money(item["amount_minor"])))
    pdf.ln(2)
    label_w = columns[0] + columns[1] + columns[2]
    totals = [("Net", money(invoice.net_minor), ""),
              (f"VAT at {format_rate(invoice.tax_rate_bp)}", money(invoice.tax_minor), ""),
              ("Total paid", money(invoice.total_minor), "B")]
    for label, amount, style in totals:
        pdf.set_font("helvetica", style=style, size=10)
        pdf.cell(label_w, 7, label, align="R")
        pdf.cell(columns[3], 7, amount, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(8)
    line("Paid in full by card through Spotless. Thank you for booking with us.", size=9)
    return bytes(pdf.output())


async def build_pdf(invoice: Invoice, store: FileStore) -> None:
    """Print and store the invoice's PDF unless it has one; announces the invoice."""
    if invoice.file_key is not None:
        return
    data = await asyncio.to_thread(render_pdf, invoice)
    key = await store.put(data, prefix=FILE_PREFIX, extension=".pdf")
    if not await invoices.attach_pdf(invoice.id, file_key=key):
        await store.delete(key)  # another attempt attached its copy first


async def invoice_booking(job: Job, settings: Settings, store: FileStore) -> None:
    """The handler of `booking.completed` and `booking.payment_updated`."""
    try:
        booking_id, state = UUID(job.payload["booking_id"]), job.payload["state"]
    except (KeyError, ValueError, TypeError) as exc:
        raise Poison(f"bad booking event: {exc!r}") from exc
    if state not in _INVOICED_STATES:
        return  # a payment update of a booking that is not done: nothing to invoice
    try:
        invoice = await invoices.issue_invoice(booking_id, settings=settings)
    except NotFound as exc:
        raise Poison(f"booking {booking_id} does not exist") from exc
    except PaymentNotSettled as exc:
        if job.type == EventType.BOOKING_COMPLETED and job.deliveries < settings.job_max_deliveries:
            raise  # the capture after completion is a moment behind: retried with backoff
        log.info("booking %s is not invoiced yet: %s; its payment update will do it", booking_id, exc.detail)
        return
    except Conflict as exc:
        raise Poison(f"booking {booking_id}: {exc.detail}") from exc
    await build_pdf(invoice, store)


def invoices_worker(settings: Settings) -> WorkerKind:
    store = file_store(settings)

    async def handle(job: Job) -> None:
        await invoice_booking(job, settings, store)

    return WorkerKind("invoices", {EventType.BOOKING_COMPLETED: handle,
                                   EventType.BOOKING_PAYMENT_UPDATED: handle})
