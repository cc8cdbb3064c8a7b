"""Cleaner heartbeats over the socket: the cleaner app triggers `client-presence` with
`{"lat": …, "lng": …}` on its own `private-user.{id}` channel (pusher-js: `channel.trigger`).

The edge turns it into the same presence-shard heartbeat as `POST /api/v1/cleaner/presence`
and never fans it out: a cleaner's location is not broadcast to anyone.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import ValidationError

from core.accounts import Role
from core.channels import user_channel
from edge.presence import HeartbeatBody
from edge.realtime.errors import ClientEventRejected
from storage.models import User

PRESENCE_EVENT = "client-presence"


class Heartbeats(Protocol):
    async def heartbeat(self, cleaner_id: str, lat: float, lng: float) -> None: ...


def own_user_id(channel: str) -> str | None:
    """The user whose private channel this is, or None for any other channel."""
    prefix = user_channel("")
    return channel[len(prefix):] if channel.startswith(prefix) else None


async def record_heartbeat(channel: str, data: Any, presence: Heartbeats, roles: dict[str, str]) -> None:
    """Validate and forward one heartbeat; `roles` caches the user's role for the socket's life."""
    user_id = own_user_id(channel)
    if user_id is None:
        raise ClientEventRejected("Client event rejected: send client-presence on your private-user channel")
    if user_id not in roles:
        user = await User.get_or_none(id=user_id)
        roles[user_id] = user.role if user is not None else ""
    if roles[user_id] != Role.CLEANER:
        raise ClientEventRejected("Client event rejected: only cleaners send presence")
    try:
        beat = HeartbeatBody.model_validate(data)
    except ValidationError:
        raise ClientEventRejected("Client event rejected: presence data must be {lat, lng} in range") from None
    await presence.heartbeat(user_id, beat.lat, beat.lng)
