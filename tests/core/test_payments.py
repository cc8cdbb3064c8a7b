"""Payment rules without I/O: what each booking outcome settles, retry backoff, refund limits."""

from __future__ import annotations

import pytest

from core.errors import Conflict, Invalid
from core.payments import Settlement, check_refund, settle_retry_delay_s, settlement_of


@pytest.mark.parametrize("state, fee, step", [
    ("completed", 0, Settlement.CAPTURE), ("disputed", 0, Settlement.CAPTURE),
    ("cancelled", 2400, Settlement.CAPTURE_FEE), ("cancelled", 0, Settlement.RELEASE),
    ("declined", 0, Settlement.RELEASE), ("expired", 0, Settlement.RELEASE),
    ("requested", 0, Settlement.NONE), ("accepted", 0, Settlement.NONE), ("in_progress", 0, Settlement.NONE)])
def test_each_outcome_settles_the_hold_its_own_way(state, fee, step):
    assert settlement_of(state=state, cancellation_fee_minor=fee) == step


def test_retry_delays_double_up_to_the_cap():
    assert [settle_retry_delay_s(n, base_s=60, max_s=600) for n in range(6)] == [60, 120, 240, 480, 600, 600]
    assert settle_retry_delay_s(10_000, base_s=60, max_s=600) == 600


def test_a_refund_is_what_is_asked_or_all_that_is_left_and_never_more():
    assert check_refund(amount_minor=None, captured_minor=4800, refunded_minor=800) == 4000
    assert check_refund(amount_minor=4000, captured_minor=4800, refunded_minor=800) == 4000
    for bad in (4001, 0, -1, True):
        with pytest.raises(Invalid) as raised:
            check_refund(amount_minor=bad, captured_minor=4800, refunded_minor=800)
        assert raised.value.errors[0].field == "amount_minor"
    with pytest.raises(Conflict) as nothing:
        check_refund(amount_minor=None, captured_minor=0, refunded_minor=0)
    assert nothing.value.code == "nothing_captured"
    with pytest.raises(Conflict) as spent:
        check_refund(amount_minor=None, captured_minor=4800, refunded_minor=4800)
    assert spent.value.code == "nothing_to_refund"
