"""One edge worker's channel registry and its NATS fan-out.

The worker subscribes to `rt.<channel>` only while at least one of its own sockets is on that
channel (subscribe on the first, unsubscribe after the last) and forwards each message to those
sockets, skipping the socket that sent it. Publishing goes through NATS even for local
receivers, so every worker, this one included, delivers the same way and in the same order.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from typing import Any, Protocol

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from core.events import realtime_subject
from core.realtime import fanout_message
from edge.realtime.errors import Unavailable
from edge.realtime.frames import text_frame
from edge.realtime.protocol import encode
from storage.bus import Bus

log = logging.getLogger("spotless.realtime")


class Receiver(Protocol):
    socket_id: str
    app_id: str

    def deliver(self, text: str, frame: bytes | None = None) -> None: ...


class Hub:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.sockets: dict[str, dict[str, Receiver]] = {}  # channel -> socket id -> receiver
        self.subscriptions: dict[str, Subscription] = {}
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.connections: dict[str, set[Any]] = defaultdict(set)  # app id -> open connections

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

    async def publish(self, *, app_id: str, channel: str, event: str, data: Any,
                      exclude_socket_id: str | None = None, user_id: str | None = None) -> None:
        body = fanout_message(app_id=app_id, channel=channel, event=event, data=data,
                              exclude_socket_id=exclude_socket_id, user_id=user_id)
        await self._client().publish(realtime_subject(channel), body)

    async def _forward(self, msg: Msg) -> None:
        try:
            message = json.loads(msg.data)
            channel, app_id = message["channel"], message["app_id"]
            text = encode(message["event"], message.get("data"), channel=channel,
                          user_id=message.get("user_id"))
        except (ValueError, KeyError, TypeError):
            log.warning("dropping a malformed realtime message on %s", msg.subject)
            return
        skip = message.get("socket_id")
        frame = text_frame(text)  # the same bytes for every socket here
        for receiver in list(self.sockets.get(channel, {}).values()):
            if receiver.socket_id != skip and receiver.app_id == app_id:
                receiver.deliver(text, frame)
