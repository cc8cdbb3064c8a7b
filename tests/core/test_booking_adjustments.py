"""The pure rules behind completing with other hours and staff cancelling with a fee."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.bookings import Party, cancellation_outcome, check_final_hours
from core.errors import Conflict, Forbidden, Invalid

START = datetime(2026, 5, 1, 9, tzinfo=UTC)


@pytest.mark.parametrize("raw, hours", [("1.5", Decimal("1.5")), (4, Decimal("4")), ("4.5", Decimal("4.5"))])
def test_final_hours_may_be_fewer_or_up_to_the_limit_more(raw, hours):
    assert check_final_hours(raw, quoted_hours=Decimal("2.5"), max_extra_hours=2) == hours


def test_final_hours_over_the_limit_or_malformed_are_refused_by_field():
    with pytest.raises(Invalid) as over:
        check_final_hours("4.75", quoted_hours=Decimal("2.5"), max_extra_hours=2)
    assert over.value.code == "over_extra_hours" and [e.field for e in over.value.errors] == ["hours"]
    for junk in ("0", "-1", "2.1", "NaN", True, None, [3]):
        with pytest.raises(Invalid):
            check_final_hours(junk, quoted_hours=Decimal("2"), max_extra_hours=2)


def outcome(party, *, hours_before, state="accepted", charge_late_fee=False):
    return cancellation_outcome(party=party, state=state, starts_at=START, now=START - timedelta(hours=hours_before),
                                amount_minor=4800, free_before=timedelta(hours=24), late_fee_bp=5000,
                                charge_late_fee=charge_late_fee)


def test_staff_cancel_free_unless_they_charge_the_fee_a_client_would_pay():
    assert outcome(Party.ADMIN, hours_before=3).fee_minor == 0
    charged = outcome(Party.ADMIN, hours_before=3, charge_late_fee=True)
    assert (charged.fee_minor, charged.late, charged.counts_against_cleaner) == (2400, True, False)
    assert charged.fee_minor == outcome(Party.CLIENT, hours_before=3).fee_minor


def test_a_fee_is_refused_when_none_is_due_or_asked_by_a_party():
    with pytest.raises(Conflict) as early:
        outcome(Party.ADMIN, hours_before=48, charge_late_fee=True)
    assert early.value.code == "no_fee_due"
    with pytest.raises(Conflict):
        outcome(Party.ADMIN, hours_before=3, state="requested", charge_late_fee=True)
    for party in (Party.CLIENT, Party.CLEANER):
        with pytest.raises(Forbidden):
            outcome(party, hours_before=3, charge_late_fee=True)
