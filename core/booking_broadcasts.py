"""What a booking event shows live: the Pusher event, its data and its channels. Pure, no I/O.

A new request becomes `booking.created` and every later transition `booking.updated`, sent to
the booking's own channel, `private-booking.{booking_id}`, and to each party's
`private-user.{user_id}`, so an open booking screen and a bookings list both refresh. Reminders
and payment updates are not state changes and are not broadcast. This module never publishes:
the realtime job worker (jobs/realtime.py) does, once the event has left the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from core.channels import booking_channel, user_channel
from core.events import EventType, RealtimeEvent

BROADCAST_EVENTS: dict[str, RealtimeEvent] = {
    EventType.BOOKING_REQUESTED: RealtimeEvent.BOOKING_CREATED,
    **{
        t: RealtimeEvent.BOOKING_UPDATED
        for t in (
            EventType.BOOKING_ACCEPTED,
            EventType.BOOKING_DECLINED,
            EventType.BOOKING_EXPIRED,
            EventType.BOOKING_CANCELLED,
            EventType.BOOKING_ON_THE_WAY,
            EventType.BOOKING_STARTED,
            EventType.BOOKING_COMPLETED,
            EventType.BOOKING_DISPUTED,
        )
    },
}

_REQUIRED = ("booking_id", "state", "client_id", "cleaner_id", "starts_at", "by")
_OPTIONAL = ("reason", "cancellation_fee_minor", "hours", "amount_minor", "quoted_hours", "quoted_amount_minor")
_NUMBERS = frozenset({"hours", "quoted_hours"})  # decimal text in the outbox; numbers, as in the REST answers


@dataclass(frozen=True)
class Broadcast:
    """One Pusher event on one channel."""

    channel: str
    event: str
    data: dict[str, Any]


def time_of_event(event_id: UUID) -> datetime:
    """When the event was written: event ids are UUIDv7, whose first 48 bits are Unix ms."""
    return datetime.fromtimestamp((event_id.int >> 80) / 1000, tz=UTC)


def booking_broadcasts(
    event_type: str, payload: Mapping[str, Any], *, event_id: UUID
) -> list[Broadcast]:
    """The broadcasts of one booking outbox event (core.events.BookingChanged); [] when it shows
    nothing live. Raise ValueError when the payload lacks what every booking event carries."""
    event = BROADCAST_EVENTS.get(event_type)
    if event is None:
        return []
    missing = [
        key for key in _REQUIRED if not isinstance(payload.get(key), str) or not payload[key]
    ]
    if missing:
        raise ValueError(f"{event_type} payload lacks {', '.join(missing)}")
    data: dict[str, Any] = {
        "booking_id": payload["booking_id"],
        "state": payload["state"],
        "change": event_type,
        "by": payload["by"],
        "client_id": payload["client_id"],
        "cleaner_id": payload["cleaner_id"],
        "starts_at": payload["starts_at"],
        "at": time_of_event(event_id).isoformat(),
        "event_id": str(event_id),
        **{key: float(payload[key]) if key in _NUMBERS else payload[key]
           for key in _OPTIONAL if payload.get(key) is not None},
    }
    channels = (
        booking_channel(data["booking_id"]),
        user_channel(data["client_id"]),
        user_channel(data["cleaner_id"]),
    )
    return [Broadcast(channel, event, data) for channel in dict.fromkeys(channels)]
