"""Completion evidence rules: who adds photos and when, how many, what completion needs, and
how an EXIF capture time becomes an instant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.bookings import Party
from core.errors import Conflict, Forbidden
from core.evidence import capture_time, check_may_add_evidence, check_may_complete


def test_the_cleaner_adds_photos_while_the_work_is_in_progress_up_to_the_limit():
    check_may_add_evidence(party=Party.CLEANER, state="in_progress", photos=19, max_photos=20)
    with pytest.raises(Conflict) as too_many:
        check_may_add_evidence(party=Party.CLEANER, state="in_progress", photos=20, max_photos=20)
    assert too_many.value.code == "too_many_evidence_photos"
    for state in ("requested", "accepted", "on_the_way", "completed", "disputed", "cancelled"):
        with pytest.raises(Conflict) as not_now:
            check_may_add_evidence(party=Party.CLEANER, state=state, photos=0, max_photos=20)
        assert not_now.value.code == "evidence_not_accepted_now"
    for party in (Party.CLIENT, Party.ADMIN, Party.SYSTEM):
        with pytest.raises(Forbidden):
            check_may_add_evidence(party=party, state="in_progress", photos=0, max_photos=20)


def test_completion_needs_a_photo_only_when_the_service_asks_for_one():
    check_may_complete(requires_photos=False, photos=0)
    check_may_complete(requires_photos=True, photos=1)
    with pytest.raises(Conflict) as refused:
        check_may_complete(requires_photos=True, photos=0)
    assert refused.value.code == "evidence_required"


@pytest.mark.parametrize("raw, zone, expected", [
    ("2026-05-01T10:30:00+02:00", "Europe/London", datetime(2026, 5, 1, 8, 30, tzinfo=UTC)),
    ("2026-05-01T10:30:00", "Europe/London", datetime(2026, 5, 1, 9, 30, tzinfo=UTC)),  # BST
    ("2026-01-15T10:30:00", "Europe/London", datetime(2026, 1, 15, 10, 30, tzinfo=UTC)),
    ("2026-01-15T10:30:00", "America/New_York", datetime(2026, 1, 15, 15, 30, tzinfo=UTC)),
    (None, "UTC", None),
    ("yesterday-ish", "UTC", None),
])
def test_an_exif_time_without_an_offset_is_read_in_the_cleaners_zone(raw, zone, expected):
    assert capture_time(raw, time_zone=zone) == expected
