"""Invoice rules: what an invoice of a completed booking says, and how it is numbered. Pure.

storage/invoices.py allocates the number and writes the row; jobs/invoices.py prints the PDF.
The amounts are what the client actually paid: the captured amount when the booking was
charged, the quoted price when it was made without payments (development). The VAT in that
total is the booking's own tax line when the total is the quoted one, otherwise it is taken
out of the total at the booking tax rate, so lines always add up to the total to the penny.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from core.accounts import Role
from core.bookings import BASIS_POINTS, BookingState
from core.errors import Conflict
from core.payments import PaymentStatus

NUMBER_DIGITS = 6


class InvoiceError(StrEnum):
    BOOKING_NOT_COMPLETED = "booking_not_completed"
    INVOICE_PENDING = "invoice_pending"
    PAYMENT_NOT_CAPTURED = "payment_not_captured"


class PaymentNotSettled(Conflict):
    """The booking's money is not final yet (capture in flight): invoice it later."""

    code = InvoiceError.PAYMENT_NOT_CAPTURED
    title = "The payment is not captured yet"


# Whatever happened to the money after capture (a refund, a chargeback) does not change what was
# invoiced: a refund is a credit note's business, not a reason to renumber.
_PAID = {PaymentStatus.CAPTURED, PaymentStatus.PARTIALLY_CAPTURED, PaymentStatus.REFUNDED,
         PaymentStatus.DISPUTED}


def invoice_number(year: int, seq: int) -> str:
    """`2026-000001`: the year of issue and the gapless sequence number within it."""
    return f"{year}-{seq:0{NUMBER_DIGITS}d}"


def is_invoiceable(*, state: str, completed_at: object) -> bool:
    """Only work that was done is invoiced (a completed booking stays so when disputed)."""
    return completed_at is not None and state in (BookingState.COMPLETED, BookingState.DISPUTED)


def may_read_invoice(*, user_id: str, role: str, client_id: str) -> bool:
    """The client who paid and staff read an invoice; the cleaner and strangers do not learn of it."""
    return user_id == client_id or role == Role.ADMIN


def paid_total(*, payment_status: str, captured_minor: int, amount_minor: int) -> int:
    """What the client paid for the booking; PaymentNotSettled while the capture is in flight."""
    if payment_status == PaymentStatus.NONE:
        return amount_minor  # booked without payments (development): the quoted price
    if payment_status in _PAID and captured_minor > 0:
        return captured_minor
    raise PaymentNotSettled(f"the booking's payment is {payment_status}, not captured")


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: str  # hours, as printed ("2.5"); "1" for a fee
    unit_minor: int | None  # the hourly rate; None when the line is a lump sum
    amount_minor: int  # net of VAT


@dataclass(frozen=True)
class InvoiceAmounts:
    lines: list[InvoiceLine]
    net_minor: int
    tax_minor: int
    total_minor: int
    tax_rate_bp: int

    def lines_json(self) -> list[dict[str, Any]]:
        return [asdict(line) for line in self.lines]


def invoice_amounts(
    *, total_minor: int, service_name: str, cleaner_name: str, hours: Decimal, hourly_rate_minor: int,
    subtotal_minor: int, platform_fee_minor: int, tax_minor: int, tax_rate_bp: int,
) -> InvoiceAmounts:
    """The invoice's lines for a booking whose client paid `total_minor` in all.

    The quoted subtotal is split into the cleaner's work and the platform's booking fee (the fee
    comes out of the subtotal, it is never added on top), then VAT, then the total."""
    if total_minor == subtotal_minor + tax_minor:
        net, tax = subtotal_minor, tax_minor
        work = subtotal_minor - platform_fee_minor
        lines = [InvoiceLine(f"{service_name} by {cleaner_name}", _hours(hours), hourly_rate_minor, work)]
        if platform_fee_minor:
            lines.append(InvoiceLine("Spotless booking fee", "1", None, platform_fee_minor))
    else:  # the captured amount differs from the quote: one line, VAT taken out of the total
        net = (total_minor * BASIS_POINTS + (BASIS_POINTS + tax_rate_bp) // 2) // (BASIS_POINTS + tax_rate_bp)
        tax = total_minor - net
        lines = [InvoiceLine(f"{service_name} by {cleaner_name}", _hours(hours), None, net)]
    return InvoiceAmounts(lines, net, tax, net + tax, tax_rate_bp)


def _hours(hours: Decimal) -> str:
    return f"{hours.normalize():f}"


def format_money(amount_minor: int, currency: str) -> str:
    """`£12.50`, `€3.00`, `12.50 CHF`: for documents people read, never for arithmetic."""
    symbol = {"GBP": "£", "EUR": "€", "USD": "$"}.get(currency.upper())
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 100)
    number = f"{units:,}.{cents:02d}"
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"


def format_rate(rate_bp: int) -> str:
    """`20%`, `12.5%`."""
    percent = f"{Decimal(rate_bp) / 100:f}"
    return (percent.rstrip("0").rstrip(".") if "." in percent else percent) + "%"
