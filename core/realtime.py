"""Realtime configuration and routing rules: the Pusher apps and which shard owns a key. Pure.

Apps come from one JSON setting (`SPOTLESS_REALTIME_APPS`), a list of objects with `id`, `key`,
`secret`, optional limits and optional `allowed_origins`. The first app is the platform's own:
the one that chat events and the channel-auth endpoint use unless a request names another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from core.sharding import shard_of_cleaner


@dataclass(frozen=True)
class RealtimeApp:
    id: str
    key: str
    secret: str
    max_message_bytes: int = 10_000
    max_connections: int = 10_000  # per edge worker process
    max_subscriptions_per_socket: int = 100
    client_events_per_s: int = 10
    # Which web pages may open sockets, as Laravel Reverb's `allowed_origins`: host patterns
    # ("app.example.com", "*.example.com") or whole origins ("https://app.example.com:8443");
    # "*" allows every page. See `origin_allowed`.
    allowed_origins: tuple[str, ...] = ("*",)

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a socket whose handshake carried this `Origin` header may connect.

        A browser always sends the page's origin on a WebSocket handshake, so the list keeps other
        web pages off the app's key. A handshake without the header is a native app or a server
        (the cleaner and client apps, Pusher's server tools), which could claim any origin
        anyway: it is allowed. `null` (a sandboxed frame, a file) matches only "*"."""
        if "*" in self.allowed_origins or origin is None:
            return True
        origin = origin.strip().lower()
        try:
            host = urlsplit(origin).hostname if "://" in origin else None
        except ValueError:
            return False
        for pattern in self.allowed_origins:
            if "://" in pattern:
                if fnmatchcase(origin, pattern):
                    return True
            elif host and fnmatchcase(host, pattern):
                return True
        return False


def parse_apps(raw: str) -> tuple[RealtimeApp, ...]:
    """Parse the apps setting; raise ValueError naming what is wrong (checked at start-up)."""
    try:
        items: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"realtime_apps is not JSON: {exc}") from None
    if not isinstance(items, list) or not items:
        raise ValueError("realtime_apps must be a non-empty JSON list of apps")
    apps: list[RealtimeApp] = []
    for item in items:
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) and item.get(k) for k in ("id", "key", "secret")
        ):
            raise ValueError("each realtime app needs non-empty string id, key and secret")
        if not item["id"].isascii() or not item["id"].isdigit():
            raise ValueError("realtime app ids are numeric strings, as Pusher's SDKs require")
        if "allowed_origins" in item:
            item = {**item, "allowed_origins": _origin_patterns(item["id"], item["allowed_origins"])}
        try:
            apps.append(RealtimeApp(**item))
        except TypeError as exc:
            raise ValueError(f"realtime app {item.get('id')!r}: {exc}") from None
    if len({a.id for a in apps}) != len(apps) or len({a.key for a in apps}) != len(apps):
        raise ValueError("realtime app ids and keys must be unique")
    return tuple(apps)


def _origin_patterns(app_id: str, patterns: Any) -> tuple[str, ...]:
    """`allowed_origins` as given, lower-cased; ValueError unless a non-empty list of patterns."""
    if not isinstance(patterns, list) or not patterns or not all(
            isinstance(p, str) and p and not any(c.isspace() for c in p) for p in patterns):
        raise ValueError(f"realtime app {app_id!r}: allowed_origins must be a non-empty list of host "
                         'patterns or origins without spaces, such as ["app.example.com", "*.example.com"]')
    for pattern in patterns:
        if "://" in pattern and urlsplit(pattern).path not in ("", "/"):
            raise ValueError(f"realtime app {app_id!r}: allowed origin {pattern!r} has a path; an origin is "
                             "scheme://host[:port]")
    return tuple(p.lower().rstrip("/") for p in patterns)


def shard_of_conversation(conversation_id: str, shard_count: int) -> int:
    """The ConversationShard owning a conversation: the same rendezvous hash as cleaners use."""
    return shard_of_cleaner(str(conversation_id), shard_count)


def shard_of_channel(app_id: str, channel: str, shard_count: int) -> int:
    """The PresenceChannelShard holding a presence channel's member registry."""
    return shard_of_cleaner(f"{app_id}/{channel}", shard_count)


def fanout_message(
    *, app_id: str, channel: str, event: str, data: Any,
    exclude_socket_id: str | None = None, user_id: str | None = None,
) -> bytes:
    """The body of a NATS `rt.<channel>` message, the same from every publisher (edge, shards).

    `exclude_socket_id` is the sender's socket, which edge workers skip (no echo); `user_id` is
    set on client events of presence channels, as Pusher does."""
    message: dict[str, Any] = {"app_id": app_id, "channel": channel, "event": event, "data": data}
    if exclude_socket_id:
        message["socket_id"] = exclude_socket_id
    if user_id is not None:
        message["user_id"] = user_id
    return json.dumps(message, separators=(",", ":")).encode()
