"""The NATS connection every process kind shares (edge, actors, jobs). Connects in the background
and keeps reconnecting, so a process starts, and reports not-ready, while NATS is down."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError

log = logging.getLogger("spotless.bus")


class Bus:
    def __init__(self, url: str, *, name: str) -> None:
        self.url = url
        self.name = name
        self.client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_connect = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._connect_forever())

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                self.client = await nats.connect(
                    self.url, name=self.name, max_reconnect_attempts=-1, reconnect_time_wait=1,
                    connect_timeout=2, allow_reconnect=True,
                )
                self._first_connect.set()
                return
            except Exception as exc:  # nats-py raises several unrelated types on connect
                log.warning("NATS not reachable at %s (%s); retrying", self.url, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def wait_connected(self, timeout_s: float) -> bool:
        if not self.connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_connect.wait(), timeout_s)
        return self.connected

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.client is not None and not self.client.is_closed:
            with contextlib.suppress(Exception):
                await self.client.drain()


async def add_or_update_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create a JetStream stream, or bring an existing one to this config; idempotent, so every
    process that uses a stream may call it at start, concurrently."""
    try:
        await js.add_stream(config)
    except BadRequestError:  # exists with another config
        await js.update_stream(config)
