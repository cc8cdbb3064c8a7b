"""Review rules: who may review which booking, what a rating and a text may be. Pure.

A client rates a booking they made once the work is done (completed, or disputed after
completion), once, 1 to 5 stars with an optional text; the cleaner may answer once. Staff
hide a review that breaks the rules; a hidden review leaves the cleaner's rating.
storage/reviews.py applies these; nothing else decides them.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from core.bookings import BookingState, Party, check_text
from core.errors import Conflict, Forbidden, Invalid

REVIEWABLE_STATES = (BookingState.COMPLETED, BookingState.DISPUTED)


class ReviewError(StrEnum):
    NOT_COMPLETED = "booking_not_completed"
    ALREADY_REVIEWED = "already_reviewed"
    ALREADY_REPLIED = "already_replied"


def shown_average(average: Decimal, count: int) -> float | None:
    """A rating average as the API answers it: a number, or None while no visible review counts."""
    return float(average) if count else None


def check_rating(raw: object) -> int:
    """A whole number of stars from 1 to 5."""
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 5:
        raise Invalid("must be a whole number from 1 to 5", field="rating")
    return raw


def check_review_text(raw: str, *, field: str, max_chars: int, required: bool) -> str:
    text = check_text(raw, field=field).strip()
    if required and not text:
        raise Invalid("must not be empty", field=field)
    if len(text) > max_chars:
        raise Invalid(f"must be at most {max_chars} characters", field=field)
    return text


def check_may_review(*, party: Party, state: str, already_reviewed: bool) -> None:
    """Only the booking's client, only after the work, only once."""
    if party != Party.CLIENT:
        raise Forbidden("only the client who booked reviews a booking")
    if state not in REVIEWABLE_STATES:
        raise Conflict("a booking is reviewed once it is completed", code=ReviewError.NOT_COMPLETED)
    if already_reviewed:
        raise Conflict("this booking has been reviewed already", code=ReviewError.ALREADY_REVIEWED)


def check_may_reply(*, party: Party, already_replied: bool) -> None:
    """Only the booking's cleaner, once."""
    if party != Party.CLEANER:
        raise Forbidden("only the cleaner who did the work replies to its review")
    if already_replied:
        raise Conflict("this review has a reply already", code=ReviewError.ALREADY_REPLIED)
