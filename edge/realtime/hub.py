"""One edge worker's channel registry and its NATS fan-out.

The worker subscribes to `rt.<channel>` only while at least one of its own sockets is on that
channel (subscribe on the first, unsubscribe after the last) and forwards each message to those
sockets, skipping the socket that sent it. Publishing goes through NATS even for local
receivers, so every worker, this one included, delivers the same way and in the same order.
An event on a cache channel is stored first (storage/realtime_cache.py), so that a socket that
subscribes later, on any worker, gets it as its first event (`cached`).
For channel queries (edge/realtime/census.py) it counts its sockets per channel from that
registry when asked; nothing is counted per message.

Revoked access closes sockets. The Pusher protocol's sockets are anonymous: a user's token only
shows at the auth endpoint, which may run on another worker. So a socket id starts with its
worker's number, and the auth endpoint tells that worker (`sys.sockets.<worker>.granted`) which
token authorised the socket. When tokens are revoked (suspension, password reset, sign-out),
the realtime job publishes their ids on `sys.sockets.revoked` and every worker closes, with
4009, each socket one of them authorised, which leaves its presence channels as a close does.
A worker remembers revocations for `REVOCATION_MEMORY_S`, so a grant that arrives after the
revocation it predates (the two travel different ways) still closes its socket.

A grant names the channel and the signature the endpoint returned, and binds the token to the
socket only when the socket subscribes with that very signature: the first grant for it heard
before the subscription, or else the first heard after it; one subscription binds one token.
Anyone signed in may ask the endpoint to sign any socket id, as Pusher's protocol allows, and
two parties of a booking get the same signature for one socket on its private channel; so a
signature the socket never uses binds nothing, and one asked for after the socket's own binds
nothing either: nobody gets someone else's socket closed by signing for its id and signing out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import defaultdict, deque
from typing import Any, Protocol

from nats import errors as nats_errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from core.channels import is_cache_channel
from core.events import (
    SOCKETS_REVOKED_SUBJECT,
    SOCKETS_TERMINATED_SUBJECT,
    realtime_subject,
    socket_grant_subject,
)
from core.realtime import fanout_message
from edge.realtime.errors import Unavailable
from edge.realtime.frames import text_frame
from edge.realtime.protocol import encode
from storage.bus import Bus
from storage.realtime_cache import ChannelCache

log = logging.getLogger("spotless.realtime")

REVOCATION_MEMORY_S = 120.0  # how long a worker holds a revocation for grants that arrive after it
# A grant heard after a revocation of its token closes its socket if it was made before the
# revocation, give or take this much for the clocks of two machines; one made later (the
# account was reinstated meanwhile) stands.
GRANT_CLOCK_SLACK_S = 5.0
# Grants a socket has not used (yet) that a worker keeps per socket: as many as a socket may
# hold subscriptions by default. When full, newer offers are not kept: the socket's own client
# asks for its signatures as soon as it connects, before anyone else can know its id, so a
# stranger flooding the id cannot push those out, nor make the worker hold more than this.
OFFERS_PER_SOCKET = 100


class Receiver(Protocol):
    socket_id: str
    app_id: str

    def deliver(self, text: str, frame: bytes | None = None) -> None: ...


class Socket(Receiver, Protocol):
    """An open connection as the registry sees it: a receiver that can be granted and revoked."""

    grants: set[int]  # ids of the tokens that authorised its channels
    awaiting_grant: dict[str, str]  # channel -> the auth it subscribed with, until a grant of it binds

    def revoke(self, reason: str) -> None: ...

    def is_member(self, user_id: str) -> bool:
        """Whether it is on some presence channel as this user."""
        ...


class Hub:
    def __init__(self, bus: Bus, cache: ChannelCache) -> None:
        self.bus = bus
        self.cache = cache
        self.worker = str(secrets.randbelow(10**9) + 1)  # the first part of this worker's socket ids
        self.sockets: dict[str, dict[str, Receiver]] = {}  # channel -> socket id -> receiver
        self.subscriptions: dict[str, Subscription] = {}
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.connections: dict[str, set[Any]] = defaultdict(set)  # app id -> open connections
        self.by_id: dict[str, Socket] = {}  # socket id -> open connection
        # socket id -> (channel, auth) -> (token id, when): grants the socket has not subscribed with
        self.offers: dict[str, dict[tuple[str, str], tuple[int, float]]] = {}
        self.revocations: deque[tuple[float, frozenset[int], float, str]] = deque()  # (heard, ids, at, reason)
        self._listening: asyncio.Task[None] | None = None

    # --- the sockets of this worker, and revoked access ---

    def new_socket_id(self) -> str:
        return f"{self.worker}.{secrets.randbelow(10**9) + 1}"

    def register(self, app_id: str, connection: Socket) -> None:
        self.connections[app_id].add(connection)
        self.by_id[connection.socket_id] = connection

    def unregister(self, app_id: str, connection: Socket) -> None:
        self.connections[app_id].discard(connection)
        if self.by_id.get(connection.socket_id) is connection:
            del self.by_id[connection.socket_id]
            self.offers.pop(connection.socket_id, None)

    def start(self) -> None:
        """Listen for grants to this worker's sockets and for revocations (in the background:
        NATS may be down when the worker starts; nats-py keeps subscriptions over reconnects)."""
        self._listening = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        while not await self.bus.wait_connected(5.0):
            pass
        client = self.bus.client
        assert client is not None
        await client.subscribe(socket_grant_subject(self.worker), cb=self._granted)
        await client.subscribe(SOCKETS_REVOKED_SUBJECT, cb=self._revoked)
        await client.subscribe(SOCKETS_TERMINATED_SUBJECT, cb=self._terminated)

    async def stop(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listening

    async def grant(self, socket_id: str, token_id: int, channel: str, auth: str) -> None:
        """Record that `token_id` signed `auth` for `socket_id` to join `channel`, on whichever
        worker holds that socket. Raises Unavailable when that worker cannot be told."""
        at = time.time()
        worker = socket_id.partition(".")[0]
        if worker == self.worker:
            self._grant(socket_id, token_id, at, channel, auth)
            return
        await self._client().publish(socket_grant_subject(worker), json.dumps(
            {"socket_id": socket_id, "token_id": token_id, "at": at, "channel": channel, "auth": auth}).encode())

    def _grant(self, socket_id: str, token_id: int, at: float, channel: str | None, auth: str | None) -> None:
        """Bind the token to the socket if it subscribed with this signature and no grant has
        bound that subscription yet; else keep the first offer of it until the socket subscribes
        with it. (A grant without a channel, from a worker of an earlier release during a
        rolling upgrade, binds at once, as those did.)"""
        socket = self.by_id.get(socket_id)
        if socket is None:
            return
        if channel is None or auth is None:
            self._bind(socket, token_id, at)
            return
        if socket.awaiting_grant.get(channel) == auth:
            del socket.awaiting_grant[channel]
            self._bind(socket, token_id, at)
            return
        offers = self.offers.setdefault(socket_id, {})
        if len(offers) < OFFERS_PER_SOCKET:
            offers.setdefault((channel, auth), (token_id, at))

    def subscribed(self, socket: Socket, channel: str, auth: str) -> None:
        """The socket joined a private or presence channel with `auth`: the token whose grant of
        it came first now authorises the socket; if none has come yet, the first to come will
        (the socket awaits it until then, or until it leaves the channel)."""
        offer = self.offers.get(socket.socket_id, {}).pop((channel, auth), None)
        if offer is not None:
            self._bind(socket, *offer)
        else:
            socket.awaiting_grant[channel] = auth

    def _bind(self, socket: Socket, token_id: int, at: float) -> None:
        socket.grants.add(token_id)
        self._forget_old_revocations()
        for _, ids, revoked_at, reason in self.revocations:
            if token_id in ids and at <= revoked_at + GRANT_CLOCK_SLACK_S:
                socket.revoke(reason)
                return

    async def _granted(self, msg: Msg) -> None:
        try:
            note = json.loads(msg.data)
            channel, auth = note.get("channel"), note.get("auth")
            self._grant(str(note["socket_id"]), int(note["token_id"]), float(note["at"]),
                        None if channel is None else str(channel), None if auth is None else str(auth))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("dropping a malformed socket grant")

    async def _revoked(self, msg: Msg) -> None:
        try:
            note = json.loads(msg.data)
            ids = frozenset(int(t) for t in note["token_ids"])
            at, reason = float(note.get("at") or time.time()), str(note.get("reason") or "revoked")
        except (ValueError, KeyError, TypeError):
            log.warning("dropping a malformed revocation")
            return
        self.revocations.append((time.monotonic(), ids, at, reason))
        self._forget_old_revocations()
        for socket in list(self.by_id.values()):
            if not ids.isdisjoint(socket.grants):
                socket.revoke(reason)

    async def terminate(self, app_id: str, user_id: str) -> None:
        """Close, on every worker, the app's sockets that are on a presence channel as this user
        (Pusher's terminate_connections, as Reverb decides who a socket's user is). Raises
        Unavailable when the workers cannot be told."""
        await self._client().publish(SOCKETS_TERMINATED_SUBJECT, json.dumps(
            {"app_id": app_id, "user_id": user_id}).encode())

    async def _terminated(self, msg: Msg) -> None:
        try:
            note = json.loads(msg.data)
            app_id, user_id = str(note["app_id"]), str(note["user_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("dropping a malformed termination")
            return
        for socket in list(self.connections.get(app_id, ())):
            if socket.is_member(user_id):
                socket.revoke("terminated")

    def _forget_old_revocations(self) -> None:
        now = time.monotonic()
        while self.revocations and now - self.revocations[0][0] > REVOCATION_MEMORY_S:
            self.revocations.popleft()

    # --- channels ---

    def _client(self) -> Any:
        if not self.bus.connected:
            raise Unavailable()
        return self.bus.client

    async def join(self, channel: str, receiver: Receiver) -> None:
        """Add a socket to a channel; returns once this worker's NATS subscription is live."""
        async with self.locks[channel]:
            local = self.sockets.setdefault(channel, {})
            if channel not in self.subscriptions:
                client = self._client()
                self.subscriptions[channel] = await client.subscribe(
                    realtime_subject(channel), cb=self._forward)
                await client.flush(timeout=5)  # the server has the SUB before we say "succeeded"
            local[receiver.socket_id] = receiver

    async def leave(self, channel: str, receiver: Receiver) -> None:
        async with self.locks[channel]:
            local = self.sockets.get(channel, {})
            local.pop(receiver.socket_id, None)
            if local:
                return
            self.sockets.pop(channel, None)
            subscription = self.subscriptions.pop(channel, None)
            if subscription is not None and self.bus.connected:
                await subscription.unsubscribe()
        if not self.locks[channel].locked() and channel not in self.sockets:
            self.locks.pop(channel, None)

    def occupied(self, app_id: str, *, channels: list[str] | None = None, prefix: str = "") -> dict[str, int]:
        """This worker's sockets per occupied channel of an app: of `channels` if given, else of
        every channel whose name starts with `prefix`. O(the sockets on the channels looked at)."""
        names = channels if channels is not None else [c for c in self.sockets if c.startswith(prefix)]
        counts = {channel: sum(1 for receiver in self.sockets.get(channel, {}).values()
                               if receiver.app_id == app_id) for channel in names}
        return {channel: count for channel, count in counts.items() if count}

    async def publish(self, *, app_id: str, channel: str, event: str, data: Any,
                      exclude_socket_id: str | None = None, user_id: str | None = None) -> None:
        body = fanout_message(app_id=app_id, channel=channel, event=event, data=data,
                              exclude_socket_id=exclude_socket_id, user_id=user_id)
        client = self._client()
        if is_cache_channel(channel) and not event.startswith("pusher_internal:"):
            await self._cache_call(self.cache.remember(client, app_id=app_id, channel=channel, message=body))
        await client.publish(realtime_subject(channel), body)

    async def cached(self, app_id: str, channel: str) -> str | None:
        """The frame of a cache channel's last event (stored by `publish` on any worker), if any."""
        body = await self._cache_call(self.cache.last(self._client(), app_id=app_id, channel=channel))
        parsed = _parse(body) if body is not None else None
        return parsed[3] if parsed is not None else None

    @staticmethod
    async def _cache_call(call: Any) -> Any:
        """A JetStream request of the cache: NATS trouble is Unavailable, as for a publish."""
        try:
            return await call
        except (TimeoutError, OSError, nats_errors.Error) as exc:
            log.warning("the cache channel store failed: %r", exc)
            raise Unavailable() from None

    async def _forward(self, msg: Msg) -> None:
        parsed = _parse(msg.data)
        if parsed is None:
            log.warning("dropping a malformed realtime message on %s", msg.subject)
            return
        app_id, skip, channel, text = parsed
        frame = text_frame(text)  # the same bytes for every socket here
        for receiver in list(self.sockets.get(channel, {}).values()):
            if receiver.socket_id != skip and receiver.app_id == app_id:
                receiver.deliver(text, frame)


def _parse(body: bytes) -> tuple[str, str | None, str, str] | None:
    """A fan-out message body: (its app id, the socket id it skips, its channel, the frame text
    for sockets), or None when it is malformed."""
    try:
        message = json.loads(body)
        channel, app_id = message["channel"], message["app_id"]
        text = encode(message["event"], message.get("data"), channel=channel, user_id=message.get("user_id"))
    except (ValueError, KeyError, TypeError):
        return None
    return app_id, message.get("socket_id"), channel, text
