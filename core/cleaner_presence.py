"""Who hears that a cleaner went online or offline, and who sees where they are. Pure, no I/O.

A client with a booking the cleaner has accepted and not yet finished is told, on their
`private-user.{id}` channel, when the cleaner comes online or goes offline (`cleaner.presence`).
The cleaner's location is shared only while one of that client's bookings has the cleaner on
the way or at work, and then also on every heartbeat, so the client can follow them. A request
the cleaner has not accepted reveals nothing. The PresenceShard decides the transitions and
publishes what this module returns; nothing here publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.bookings import BookingState
from core.channels import user_channel

WATCHING_STATES = (BookingState.ACCEPTED, BookingState.ON_THE_WAY, BookingState.IN_PROGRESS)
TRACKING_STATES = (BookingState.ON_THE_WAY, BookingState.IN_PROGRESS)


@dataclass(frozen=True)
class Watcher:
    """A client's booking with a cleaner, in one of WATCHING_STATES."""

    client_id: str
    booking_id: str
    state: str


def presence_broadcasts(
    cleaner_id: str, *, online: bool, changed: bool, at: str, location: tuple[float, float] | None,
    watchers: list[Watcher],
) -> list[tuple[str, dict[str, Any]]]:
    """(channel, data) for each client to tell. `changed`: the cleaner just came online or went
    offline (every watcher hears it); otherwise this is a location update (trackers only)."""
    tracking: dict[str, list[str]] = {}
    watching: set[str] = set()
    for watcher in watchers:
        watching.add(watcher.client_id)
        if watcher.state in TRACKING_STATES:
            tracking.setdefault(watcher.client_id, []).append(watcher.booking_id)
    out: list[tuple[str, dict[str, Any]]] = []
    for client_id in sorted(watching if changed else tracking):
        data: dict[str, Any] = {"cleaner_id": cleaner_id, "online": online, "at": at}
        if online and location is not None and client_id in tracking:
            data["location"] = {"lat": location[0], "lng": location[1]}
            data["booking_ids"] = sorted(tracking[client_id])
        elif not changed:
            continue  # a location update without a location says nothing
        out.append((user_channel(client_id), data))
    return out
