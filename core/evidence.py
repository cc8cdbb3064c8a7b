"""Completion evidence rules: who may add photos to a booking, when, how many, and whether a
booking may be completed without them. Pure, no I/O; storage/evidence.py applies them.

Photos are taken while the work is under way (`in_progress`): that is when the cleaner is at
the door and the result is in front of them. Before they start there is nothing to prove, and
once the booking is completed its evidence is what the client (and staff, in a dispute) judged
it by, so it no longer changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from core.bookings import BookingState, Party
from core.errors import Conflict, Forbidden


class EvidenceError(StrEnum):
    NOT_NOW = "evidence_not_accepted_now"
    TOO_MANY = "too_many_evidence_photos"
    REQUIRED = "evidence_required"


class EvidenceStatus(StrEnum):
    PROCESSING = "processing"  # stored; the images job has not run yet
    READY = "ready"  # EXIF read and stripped, oriented, thumbnails written
    REFUSED = "refused"  # the images job found it is not a usable image


UPLOAD_STATES = frozenset({BookingState.IN_PROGRESS})
COUNTING_STATUSES = (EvidenceStatus.PROCESSING, EvidenceStatus.READY)  # what completion counts


def check_may_add_evidence(*, party: Party, state: str, photos: int, max_photos: int) -> None:
    """The booking's cleaner adds photos while the work is in progress, up to `max_photos`."""
    if party != Party.CLEANER:
        raise Forbidden("only the booking's cleaner adds completion photos")
    if state not in UPLOAD_STATES:
        raise Conflict(f"photos are added while the booking is in progress; it is {state}",
                       code=EvidenceError.NOT_NOW)
    if photos >= max_photos:
        raise Conflict(f"a booking has at most {max_photos} photos", code=EvidenceError.TOO_MANY)


def check_may_complete(*, requires_photos: bool, photos: int) -> None:
    """A service that asks for photo evidence is completed only with at least one photo."""
    if requires_photos and photos < 1:
        raise Conflict("this service needs at least one photo of the finished work before completion",
                       code=EvidenceError.REQUIRED)


def capture_time(raw: str | None, *, time_zone: str) -> datetime | None:
    """An EXIF capture time as an instant. EXIF often has no offset; the camera's clock then
    read the local time where the work was done, which is the cleaner's time zone."""
    if raw is None:
        return None
    try:
        stamp = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=ZoneInfo(time_zone))
    return stamp.astimezone(UTC)
