"""Invoice rules, pure: what was paid, how the lines add up, who may read it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.invoices import (
    PaymentNotSettled,
    format_money,
    format_rate,
    invoice_amounts,
    invoice_number,
    may_read_invoice,
    paid_total,
)


def amounts(total_minor: int):
    return invoice_amounts(total_minor=total_minor, service_name="Standard clean", cleaner_name="Cleo",
                           hours=Decimal("2.00"), hourly_rate_minor=2000, subtotal_minor=4000,
                           platform_fee_minor=600, tax_minor=800, tax_rate_bp=2000)


def test_the_quoted_total_keeps_the_bookings_own_lines():
    quoted = amounts(4800)
    assert [(line.quantity, line.amount_minor) for line in quoted.lines] == [("2", 3400), ("1", 600)]
    assert (quoted.net_minor, quoted.tax_minor, quoted.total_minor) == (4000, 800, 4800)


@pytest.mark.parametrize("total", [1, 99, 4801, 123457])
def test_any_other_total_is_split_at_the_tax_rate_and_adds_up(total):
    split = amounts(total)
    assert split.net_minor + split.tax_minor == split.total_minor == total
    assert sum(line.amount_minor for line in split.lines) == split.net_minor
    assert abs(split.tax_minor - split.net_minor * 0.2) <= 1


def test_what_was_paid_is_the_capture_or_without_payments_the_quote():
    assert paid_total(payment_status="none", captured_minor=0, amount_minor=4800) == 4800
    assert paid_total(payment_status="captured", captured_minor=4800, amount_minor=4800) == 4800
    assert paid_total(payment_status="refunded", captured_minor=4800, amount_minor=4800) == 4800
    for in_flight in ("authorized", "settle_failed", "canceled"):
        with pytest.raises(PaymentNotSettled):
            paid_total(payment_status=in_flight, captured_minor=0, amount_minor=4800)


def test_numbers_money_and_rates_read_as_people_expect():
    assert invoice_number(2026, 1) == "2026-000001"
    assert invoice_number(2026, 1234567) == "2026-1234567"
    assert format_money(123456, "GBP") == "£1,234.56" and format_money(5, "CHF") == "0.05 CHF"
    assert (format_rate(2000), format_rate(1250), format_rate(0)) == ("20%", "12.5%", "0%")


def test_only_the_paying_client_and_staff_read_an_invoice():
    assert may_read_invoice(user_id="a", role="client", client_id="a")
    assert may_read_invoice(user_id="s", role="admin", client_id="a")
    assert not may_read_invoice(user_id="c", role="cleaner", client_id="a")
    assert not may_read_invoice(user_id="b", role="client", client_id="a")
