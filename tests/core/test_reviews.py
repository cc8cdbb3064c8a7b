"""Review rules without I/O: who reviews and replies, and what a rating and a text may be."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.bookings import Party
from core.errors import Conflict, Forbidden, Invalid
from core.reviews import (
    check_may_reply,
    check_may_review,
    check_rating,
    check_review_text,
    shown_average,
)


@pytest.mark.parametrize("raw", [1, 3, 5])
def test_ratings_are_whole_stars_from_one_to_five(raw):
    assert check_rating(raw) == raw


@pytest.mark.parametrize("raw", [0, 6, -1, 4.5, "5", True, None, [5]])
def test_anything_else_is_not_a_rating(raw):
    with pytest.raises(Invalid) as raised:
        check_rating(raw)
    assert raised.value.errors[0].field == "rating"


def test_texts_are_trimmed_bounded_and_free_of_nul():
    assert check_review_text("  great  ", field="text", max_chars=10, required=False) == "great"
    assert check_review_text("", field="text", max_chars=10, required=False) == ""
    for raw, required in (("x" * 11, False), ("a\x00b", False), ("   ", True)):
        with pytest.raises(Invalid):
            check_review_text(raw, field="text", max_chars=10, required=required)


def test_only_the_client_reviews_a_finished_booking_once():
    check_may_review(party=Party.CLIENT, state="completed", already_reviewed=False)
    check_may_review(party=Party.CLIENT, state="disputed", already_reviewed=False)
    for party in (Party.CLEANER, Party.ADMIN):
        with pytest.raises(Forbidden):
            check_may_review(party=party, state="completed", already_reviewed=False)
    with pytest.raises(Conflict) as early:
        check_may_review(party=Party.CLIENT, state="in_progress", already_reviewed=False)
    assert early.value.code == "booking_not_completed"
    with pytest.raises(Conflict) as twice:
        check_may_review(party=Party.CLIENT, state="completed", already_reviewed=True)
    assert twice.value.code == "already_reviewed"


def test_only_the_cleaner_replies_once():
    check_may_reply(party=Party.CLEANER, already_replied=False)
    with pytest.raises(Forbidden):
        check_may_reply(party=Party.CLIENT, already_replied=False)
    with pytest.raises(Conflict):
        check_may_reply(party=Party.CLEANER, already_replied=True)


def test_an_average_is_answered_as_a_number_and_as_null_before_any_review():
    assert shown_average(Decimal("4.90"), 100) == 4.9 and isinstance(shown_average(Decimal("5.00"), 1), float)
    assert shown_average(Decimal("0.00"), 0) is None
