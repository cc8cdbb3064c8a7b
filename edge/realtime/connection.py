"""One WebSocket connection speaking Pusher protocol 7: its channels, pings and client events.

`report` is the one place where a PusherError becomes a `pusher:error` frame (and a close with
that code when the error ends the connection). A frame that cannot be handled never ends the
connection by accident: unexpected exceptions are logged and reported as a generic 4200.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from core.channels import ChannelKind, channel_kind, is_cache_channel, is_encrypted_channel
from core.errors import Invalid
from core.realtime import RealtimeApp
from core.settings import Settings
from edge.realtime.chat_send import CHAT_SEND_EVENT, ChatSender, send_over_socket
from edge.realtime.cleaner_presence import PRESENCE_EVENT, Heartbeats, record_heartbeat
from edge.realtime.errors import (
    ClientEventRateLimited,
    ClientEventRejected,
    InvalidMessage,
    MessageTooLarge,
    OverSubscriptionCapacity,
    PongNotReceived,
    PusherError,
    Revoked,
    Unauthorized,
)
from edge.realtime.frames import Inbox, text_frame, write_now
from edge.realtime.hub import Hub
from edge.realtime.presence import PresenceRegistry
from edge.realtime.protocol import (
    Frame,
    data_object,
    encode,
    error_frame,
    parse_frame,
    presence_data,
)
from edge.realtime.signing import channel_auth_valid

log = logging.getLogger("spotless.realtime")

SEND_QUEUE_LIMIT = 1000  # frames waiting for a slow socket before it is disconnected


async def report(ws: Any, exc: PusherError) -> None:
    """Send `pusher:error` for `exc`; close the socket with its code when the error is fatal."""
    with contextlib.suppress(Exception):
        await ws.send(error_frame(exc.code, exc.message))
        if exc.close:
            await ws.close(exc.code, exc.message[:120])


@dataclass
class Member:
    user_id: str
    user_info: Any


class TokenBucket:
    def __init__(self, rate_per_s: int) -> None:
        self.rate = float(rate_per_s)
        self.tokens = float(rate_per_s)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Connection:
    def __init__(self, ws: Any, app: RealtimeApp, hub: Hub, presence: PresenceRegistry,
                 settings: Settings, cleaner_presence: Heartbeats | None = None,
                 chat: ChatSender | None = None) -> None:
        self.ws = ws
        self.app = app
        self.app_id = app.id
        self.hub = hub
        self.presence = presence
        self.settings = settings
        self.socket_id = hub.new_socket_id()
        self.grants: set[int] = set()  # the tokens that authorised its channels (Hub.grant)
        self.awaiting_grant: dict[str, str] = {}  # channel -> auth it joined with, no grant yet (Hub.subscribed)
        self.channels: dict[str, Member | None] = {}
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=SEND_QUEUE_LIMIT)
        self.bucket = TokenBucket(app.client_events_per_s)
        self.dropped = False
        self.cleaner_presence = cleaner_presence
        self.chat = chat
        self.roles: dict[str, str] = {}
        self.heard_at = time.monotonic()  # when the client last sent a frame
        self.ping_sent_at: float | None = None  # when we pinged a quiet client, until it answers
        self.closing = False

    # --- outgoing ---

    def deliver(self, text: str, frame: bytes | None = None) -> None:
        """Send a frame to this socket: written at once when nothing is queued or in the way,
        queued otherwise (edge/realtime/frames.py). Never blocks. `frame` is `text` as a frame's
        bytes, when the caller built it once for many sockets."""
        if self.dropped:
            return
        if self.queue.empty() and write_now(self.ws, frame or text_frame(text)):
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped = True  # never deliver past a gap; the client reconnects and catches up
            log.warning("socket %s too slow; disconnecting", self.socket_id)
            asyncio.get_running_loop().create_task(self.ws.close(4100, "Too slow; reconnect"))

    async def _write_forever(self) -> None:
        while True:
            text = await self.queue.get()
            await self.ws.send(text)

    # --- the connection's life ---

    async def run(self) -> None:
        writer = asyncio.get_running_loop().create_task(self._write_forever())
        try:
            self.deliver(encode("pusher:connection_established", {
                "socket_id": self.socket_id,
                "activity_timeout": self.settings.realtime_activity_timeout_s,
            }))
            await self._read_forever()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            await self.leave_all()

    def revoke(self, reason: str) -> None:
        """Access was withdrawn (a token that authorised this socket was revoked, or the app's
        server terminated its user's connections): say so and close with 4009, after which the
        socket leaves its channels as any closed socket does (`run`)."""
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().create_task(report(self.ws, Revoked(reason)))

    def is_member(self, user_id: str) -> bool:
        return any(member is not None and member.user_id == user_id for member in self.channels.values())

    def activity_due(self) -> float:
        """When `check_activity` next has something to do (time.monotonic()): the activity
        timeout after the last frame heard, or the pong timeout after an unanswered ping. Only
        ever later than it was, as frames arrive."""
        if self.ping_sent_at is None:
            return self.heard_at + self.settings.realtime_activity_timeout_s
        return self.ping_sent_at + self.settings.realtime_pong_timeout_s

    def check_activity(self, now: float) -> None:
        """Called by the worker's sweeper (`watch_activity`) once `activity_due()` has come:
        ping a socket that has been quiet for the activity timeout; close one that then stays
        quiet for the pong timeout. One sweeper for all sockets instead of a timer per frame
        read, which cost more than the frame itself with thousands of sockets."""
        if self.ping_sent_at is None:
            if now - self.heard_at >= self.settings.realtime_activity_timeout_s:
                self.deliver(encode("pusher:ping", {}))
                self.ping_sent_at = now
        elif now - self.ping_sent_at >= self.settings.realtime_pong_timeout_s and not self.closing:
            self.closing = True
            asyncio.get_running_loop().create_task(report(self.ws, PongNotReceived()))

    async def _read_forever(self) -> None:
        inbox = Inbox.of(self.ws)
        while True:
            raw = await inbox.next()
            if raw is None:  # the socket is closing
                return
            self.heard_at, self.ping_sent_at = time.monotonic(), None  # any frame shows the client is alive
            try:
                await self.handle(raw)
            except PusherError as exc:
                await report(self.ws, exc)
                if exc.close:
                    return
            except Exception:
                log.exception("realtime frame failed", extra={"socket_id": self.socket_id})
                await report(self.ws, PusherError())

    async def handle(self, raw: str | bytes) -> None:
        size = len(raw.encode()) if isinstance(raw, str) else len(raw)
        if size > self.app.max_message_bytes:
            raise MessageTooLarge(f"Message too large; the limit is {self.app.max_message_bytes} bytes")
        frame = parse_frame(raw)
        if frame.event == "pusher:ping":
            self.deliver(encode("pusher:pong", {}))
        elif frame.event == "pusher:pong":
            return
        elif frame.event == "pusher:subscribe":
            await self.subscribe(data_object(frame))
        elif frame.event == "pusher:unsubscribe":
            channel = data_object(frame).get("channel")
            if isinstance(channel, str) and channel in self.channels:
                await self.unsubscribe(channel)
        elif frame.event.startswith("client-"):
            await self.client_event(frame)
        else:
            raise InvalidMessage(f"Unsupported event {frame.event[:60]!r}")

    # --- channels ---

    async def subscribe(self, data: dict[str, Any]) -> None:
        channel = data.get("channel")
        try:
            kind = channel_kind(channel)  # type: ignore[arg-type]
        except Invalid:
            raise InvalidMessage("Invalid channel name") from None
        if channel in self.channels:
            await self._succeeded(channel, kind)
            return
        if len(self.channels) >= self.app.max_subscriptions_per_socket:
            raise OverSubscriptionCapacity()
        channel_data = data.get("channel_data")
        if kind is not ChannelKind.PUBLIC:
            if channel_data is not None and not isinstance(channel_data, str):
                raise Unauthorized("channel_data must be the JSON string that was signed")
            signed_data = channel_data if kind is ChannelKind.PRESENCE else None
            if not channel_auth_valid(self.app, self.socket_id, channel, data.get("auth"), signed_data):
                raise Unauthorized(f"Invalid signature for {channel}")
        member = _member(channel_data) if kind is ChannelKind.PRESENCE else None
        await self.hub.join(channel, self)
        self.channels[channel] = member
        if kind is not ChannelKind.PUBLIC:
            self.hub.subscribed(self, channel, data["auth"])
        await self._succeeded(channel, kind)

    async def _succeeded(self, channel: str, kind: ChannelKind) -> None:
        member = self.channels[channel]
        if kind is not ChannelKind.PRESENCE or member is None:
            self.deliver(encode("pusher_internal:subscription_succeeded", {}, channel=channel))
            await self._send_cached(channel)
            return
        added, members = await self.presence.join(self.app_id, channel, member.user_id,
                                                  member.user_info, self.socket_id)
        self.deliver(encode("pusher_internal:subscription_succeeded", presence_data(members),
                            channel=channel))
        await self._send_cached(channel)
        if added:
            await self.hub.publish(app_id=self.app_id, channel=channel,
                                   event="pusher_internal:member_added",
                                   data={"user_id": member.user_id, "user_info": member.user_info},
                                   exclude_socket_id=self.socket_id)

    async def _send_cached(self, channel: str) -> None:
        """On a cache channel, right after subscription_succeeded: its last event, or
        `pusher:cache_miss` when there is none (Pusher's and Reverb's frames)."""
        if is_cache_channel(channel):
            cached = await self.hub.cached(self.app_id, channel)
            self.deliver(cached if cached is not None else encode("pusher:cache_miss", None, channel=channel))

    async def unsubscribe(self, channel: str) -> None:
        member = self.channels.pop(channel, None)
        self.awaiting_grant.pop(channel, None)  # left before its grant came: nothing to bind
        await self.hub.leave(channel, self)
        if member is not None:
            removed = await self.presence.leave(self.app_id, channel, member.user_id, self.socket_id)
            if removed:
                await self.hub.publish(app_id=self.app_id, channel=channel,
                                       event="pusher_internal:member_removed",
                                       data={"user_id": member.user_id})

    async def leave_all(self) -> None:
        for channel in list(self.channels):
            try:
                await self.unsubscribe(channel)
            except Exception:
                log.exception("leaving %s failed", channel, extra={"socket_id": self.socket_id})

    # --- client events ---

    async def client_event(self, frame: Frame) -> None:
        channel = frame.channel
        if channel is None or channel not in self.channels:
            raise ClientEventRejected("Client event rejected: subscribe to the channel first")
        if channel_kind(channel) is ChannelKind.PUBLIC:
            raise ClientEventRejected("Client events are only allowed on private and presence channels")
        if is_encrypted_channel(channel):
            raise ClientEventRejected("Client events are not supported on encrypted channels")
        if not self.bucket.take():
            raise ClientEventRateLimited()
        if frame.event == PRESENCE_EVENT and self.cleaner_presence is not None:
            await record_heartbeat(channel, _parsed(frame.data), self.cleaner_presence, self.roles)
            return
        member = self.channels[channel]
        if frame.event == CHAT_SEND_EVENT and self.chat is not None:
            if member is None:
                raise ClientEventRejected(f"Client event rejected: send {CHAT_SEND_EVENT} on a conversation channel")
            self.deliver(await send_over_socket(channel, _parsed(frame.data), sender_id=member.user_id,
                                                chat=self.chat))
            return
        await self.hub.publish(app_id=self.app_id, channel=channel, event=frame.event,
                               data=frame.data, exclude_socket_id=self.socket_id,
                               user_id=member.user_id if member is not None else None)


def _parsed(data: Any) -> Any:
    """Client event data as sent: pusher-js sends an object, some clients a JSON string."""
    if isinstance(data, str):
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            return data
    return data


def _member(channel_data: Any) -> Member:
    try:
        parsed = json.loads(channel_data)
    except (TypeError, ValueError, RecursionError):
        raise Unauthorized("presence channel_data must be a JSON object with user_id") from None
    user_id = parsed.get("user_id") if isinstance(parsed, dict) else None
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not isinstance(user_id, str) or not user_id:
        raise Unauthorized("presence channel_data must carry a user_id")
    return Member(user_id, parsed.get("user_info"))



# Connections the sweeper checks before it lets the worker's other work run: a pass over 5,000
# sockets in one go held every message in the worker for several milliseconds once a second.
SWEEP_SLICE = 250


async def watch_activity(connections: Any, settings: Settings) -> None:
    """The worker's one activity sweeper. Every so often it checks the open connections whose
    `activity_due()` has come (`Connection.check_activity`: a ping, or a close), `SWEEP_SLICE`
    at a time, and no others: they wait in a heap ordered by when they fall due, so a pass costs
    what is due, not a visit to every socket (5,000 sockets took 4-16 ms of the worker's loop
    every second, in slices, which held the requests and frames arriving meanwhile). A
    connection's due time only moves later as frames arrive, so one taken from the heap too
    early goes back with its new time. `connections` maps app id to the set of open connections
    (the hub's registry); new ones are found by a set difference each pass, and closed ones
    leave the heap when they come up."""
    period = max(0.05, min(1.0, settings.realtime_activity_timeout_s / 4, settings.realtime_pong_timeout_s / 4))
    due: list[tuple[float, int, Any]] = []  # (when, tie-breaker, connection), a heap
    order = itertools.count()
    known: set[Any] = set()
    while True:
        await asyncio.sleep(period)
        groups = list(connections.values())
        current: set[Any] = set().union(*groups)
        for connection in current - known:
            heapq.heappush(due, (connection.activity_due(), next(order), connection))
        known = current
        checked = 0
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, _, connection = heapq.heappop(due)
            if not any(connection in group for group in groups):  # closed since it was queued
                continue
            when = connection.activity_due()
            if when <= now:
                connection.check_activity(now)
                checked += 1
                if connection.closing:
                    continue  # being closed for a missing pong: nothing more to check
                when = max(connection.activity_due(), now + period)
            heapq.heappush(due, (when, next(order), connection))
            if checked >= SWEEP_SLICE:
                checked = 0
                await asyncio.sleep(0)
                now = time.monotonic()
