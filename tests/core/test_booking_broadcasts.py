"""Which booking events are shown live, on which channels, with which data."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from core.booking_broadcasts import Broadcast, booking_broadcasts, time_of_event

# A UUIDv7 written at 2026-11-25 13:40:00.123 UTC
EVENT_ID = UUID(
    int=(int(datetime(2026, 11, 25, 13, 40, tzinfo=UTC).timestamp() * 1000) + 123) << 80
    | 0x7 << 76
    | 0b10 << 62
    | 42
)
PAYLOAD = {
    "booking_id": "b-1",
    "state": "requested",
    "client_id": "u-client",
    "cleaner_id": "u-cleaner",
    "starts_at": "2026-11-26T09:00:00+00:00",
    "by": "client",
}


def test_a_new_request_is_created_on_the_booking_and_both_parties_channels():
    # when a booking is requested
    broadcasts = booking_broadcasts("booking.requested", PAYLOAD, event_id=EVENT_ID)
    # then the booking's channel and each party's own channel get booking.created
    data = {
        **PAYLOAD,
        "change": "booking.requested",
        "at": "2026-11-25T13:40:00.123000+00:00",
        "event_id": str(EVENT_ID),
    }
    assert broadcasts == [
        Broadcast("private-booking.b-1", "booking.created", data),
        Broadcast("private-user.u-client", "booking.created", data),
        Broadcast("private-user.u-cleaner", "booking.created", data),
    ]


@pytest.mark.parametrize(
    ("event_type", "state"),
    [
        ("booking.accepted", "accepted"),
        ("booking.declined", "declined"),
        ("booking.expired", "expired"),
        ("booking.on_the_way", "on_the_way"),
        ("booking.started", "in_progress"),
        ("booking.completed", "completed"),
        ("booking.disputed", "disputed"),
    ],
)
def test_every_later_transition_is_an_update_saying_what_changed(event_type, state):
    payload = {**PAYLOAD, "state": state, "by": "cleaner"}
    broadcasts = booking_broadcasts(event_type, payload, event_id=EVENT_ID)
    assert {b.event for b in broadcasts} == {"booking.updated"}
    assert [b.channel for b in broadcasts] == [
        "private-booking.b-1",
        "private-user.u-client",
        "private-user.u-cleaner",
    ]
    assert broadcasts[0].data["change"] == event_type and broadcasts[0].data["state"] == state
    assert broadcasts[0].data["by"] == "cleaner"


def test_a_cancellation_carries_its_reason_and_fee():
    payload = {
        **PAYLOAD,
        "state": "cancelled",
        "reason": "plans changed",
        "cancellation_fee_minor": 3000,
    }
    (first, *_) = booking_broadcasts("booking.cancelled", payload, event_id=EVENT_ID)
    assert (first.data["reason"], first.data["cancellation_fee_minor"]) == ("plans changed", 3000)


def test_a_completion_carries_the_final_and_the_quoted_price():
    payload = {**PAYLOAD, "state": "completed", "hours": "3.5", "amount_minor": 8400,
               "quoted_hours": "3", "quoted_amount_minor": 7200}
    (first, *_) = booking_broadcasts("booking.completed", payload, event_id=EVENT_ID)
    assert {k: first.data[k] for k in ("hours", "amount_minor", "quoted_hours", "quoted_amount_minor")} == {
        "hours": 3.5, "amount_minor": 8400, "quoted_hours": 3.0, "quoted_amount_minor": 7200}


@pytest.mark.parametrize(
    "event_type", ["booking.reminder_due", "booking.payment_updated", "account.registered"]
)
def test_events_that_change_no_state_show_nothing(event_type):
    assert booking_broadcasts(event_type, PAYLOAD, event_id=EVENT_ID) == []


def test_a_payload_without_the_parties_is_refused():
    with pytest.raises(ValueError, match="cleaner_id"):
        booking_broadcasts("booking.accepted", {**PAYLOAD, "cleaner_id": None}, event_id=EVENT_ID)


def test_the_event_time_is_read_from_its_id():
    assert time_of_event(EVENT_ID) == datetime(2026, 11, 25, 13, 40, 0, 123000, tzinfo=UTC)
