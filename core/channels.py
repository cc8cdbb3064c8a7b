"""Channel names and who may join which channel: the one home of that rule. Pure, no I/O.

Public channels need no authorisation. Protected channels are named `<kind>-<resource>.<id>`:
- `private-user.{user_id}`: only that user;
- `private-booking.{booking_id}` and `presence-conversation.{booking_id}`: only the booking's
  client and cleaner, and admins (a conversation is the chat of one booking and shares its id).
Anything else protected is refused. Storage loads the facts (the booking's parties); this module
decides. Other apps on the edge authorise their own channels, which may also be Pusher's cache
(`cache-`, `private-cache-`, `presence-cache-`) and end-to-end encrypted (`private-encrypted-`)
channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from core.accounts import Role
from core.errors import Forbidden, Invalid

MAX_CHANNEL_NAME_LENGTH = 164
# Pusher's character set minus empty dot-separated parts, so every name is a valid NATS subject.
_NAME = re.compile(r"^[A-Za-z0-9_\-=@,;]+(?:\.[A-Za-z0-9_\-=@,;]+)*$")
_PROTECTED = re.compile(r"^(private|presence)-([a-z]+)\.([A-Za-z0-9_\-=@,;]+)$")


class ChannelKind(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    PRESENCE = "presence"


class ChannelError(StrEnum):
    INVALID_CHANNEL = "invalid_channel"
    CHANNEL_FORBIDDEN = "channel_forbidden"


@dataclass(frozen=True)
class Viewer:
    """Who asks to join: a signed-in user and their role."""

    user_id: str
    role: str


@dataclass(frozen=True)
class BookingParties:
    client_id: str
    cleaner_id: str


CACHE_PREFIXES = ("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-")
ENCRYPTED_PREFIX = "private-encrypted-"


def is_cache_channel(name: str) -> bool:
    """A cache channel (Pusher's, as Reverb has them): its last event goes to each new subscriber,
    or `pusher:cache_miss` when there is none. Its kind is that of the rest of its name."""
    return name.startswith(CACHE_PREFIXES)


def is_encrypted_channel(name: str) -> bool:
    """An end-to-end encrypted channel (Pusher's `private-encrypted-`): a private channel whose
    events the app's server encrypts with a key the socket gets from the app's auth endpoint, so
    the edge relays ciphertext it cannot read. Clients may not send events on one (pusher-js
    refuses to; so does the edge)."""
    return name.startswith(ENCRYPTED_PREFIX)


def channel_kind(name: str) -> ChannelKind:
    """The kind of a channel; raise Invalid when the name is not an acceptable channel name."""
    if not isinstance(name, str) or not name or len(name) > MAX_CHANNEL_NAME_LENGTH or not _NAME.match(name):
        raise Invalid("not a valid channel name", field="channel_name", code=ChannelError.INVALID_CHANNEL)
    if name.startswith("presence-"):
        return ChannelKind.PRESENCE
    if name.startswith("private-"):
        return ChannelKind.PRIVATE
    return ChannelKind.PUBLIC


def booking_id_of(name: str) -> str | None:
    """The booking whose parties decide access to this channel, if any."""
    match = _PROTECTED.match(name)
    if match and (match[1], match[2]) in {("private", "booking"), ("presence", "conversation")}:
        return match[3]
    return None


def conversation_channel(conversation_id: str) -> str:
    return f"presence-conversation.{conversation_id}"


def user_channel(user_id: str) -> str:
    return f"private-user.{user_id}"


def booking_channel(booking_id: str) -> str:
    return f"private-booking.{booking_id}"


def authorize_channel(name: str, *, viewer: Viewer, booking: BookingParties | None) -> None:
    """Raise Forbidden unless `viewer` may join channel `name` (`booking`: its parties, loaded
    when booking_id_of(name) is not None; None when there is no such booking)."""
    kind = channel_kind(name)
    refused = Forbidden(f"you may not join {name}", code=ChannelError.CHANNEL_FORBIDDEN)
    if kind is ChannelKind.PUBLIC:
        raise Forbidden("public channels need no authorisation", code=ChannelError.CHANNEL_FORBIDDEN)
    match = _PROTECTED.match(name)
    if match is None:
        raise refused
    family = (match[1], match[2])
    if family == ("private", "user"):
        if match[3] != viewer.user_id:
            raise refused
        return
    if family in {("private", "booking"), ("presence", "conversation")}:
        if booking is None:
            raise refused
        if viewer.role == Role.ADMIN or viewer.user_id in {booking.client_id, booking.cleaner_id}:
            return
    raise refused


def is_party(viewer: Viewer, booking: BookingParties) -> bool:
    """A conversation's participants are exactly the booking's client and cleaner."""
    return viewer.user_id in {booking.client_id, booking.cleaner_id}
