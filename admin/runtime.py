"""The admin's links to NATS and Ray, both optional: the dashboard works without either.

NATS (settings.nats_url) shows queue depths and re-publishes retried jobs; it connects in the
background and keeps reconnecting (storage.bus.Bus), so a page that needs it says "NATS
unreachable" instead of failing. Ray is joined only when settings.ray_address names a cluster
(the admin never starts one of its own), off the event loop and bounded in time; without it,
"cleaners online now" reads "unknown". The admin only reads from Ray: it asks the presence
shards who is online and never changes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.manager import JetStreamManager

from actors import runtime as ray_runtime
from actors.clients import PresenceClient
from actors.layout import Layouts
from core.errors import Unavailable
from core.settings import Settings
from storage import dashboard
from storage.bus import Bus

log = logging.getLogger("spotless.admin")

NATS_WAIT_S = 1.0  # how long a page waits for a NATS connection that is still being made
RAY_CONNECT_TIMEOUT_S = 60.0
RAY_CALL_TIMEOUT_S = 3.0


class AdminLinks:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bus: Bus | None = None
        self.presence: PresenceClient | None = None
        self.ray_problem: str | None = "Ray is not configured (RAY_ADDRESS is empty)"
        self._ray_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.bus = Bus(self.settings.nats_url or "nats://127.0.0.1:4222", name="spotless-admin")
        self.bus.start()
        if self.settings.ray_address:
            self.ray_problem = "still connecting to Ray"
            self._ray_task = asyncio.get_running_loop().create_task(self._join_ray())

    async def _join_ray(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, ray_runtime.connect, self.settings),
                                   RAY_CONNECT_TIMEOUT_S)
            layouts = Layouts(self.settings)  # the shard layout in PostgreSQL, followed over NATS
            if self.bus is not None:
                layouts.follow(self.bus)
            self.presence = PresenceClient(self.settings, layouts=layouts)
            self.ray_problem = None
        except Exception as exc:  # unreachable, timed out, or refused: the figure stays unknown
            self.ray_problem = f"Ray unreachable at {self.settings.ray_address} ({type(exc).__name__})"
            log.warning("admin could not join Ray: %r", exc)

    async def close(self) -> None:
        if self._ray_task is not None:
            self._ray_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ray_task
        if self.bus is not None:
            await self.bus.close()
        if self.presence is not None:
            await self.presence.layouts.stop()
            ray_runtime.disconnect()

    # --- NATS ---

    async def _connected_bus(self) -> Bus:
        if self.bus is None or not await self.bus.wait_connected(NATS_WAIT_S):
            raise Unavailable(f"NATS unreachable at {self.settings.nats_url or 'nats://127.0.0.1:4222'}",
                              dependency="nats")
        return self.bus

    async def jetstream(self) -> JetStreamContext:
        bus = await self._connected_bus()
        assert bus.client is not None
        return bus.client.jetstream()

    async def jetstream_manager(self) -> JetStreamManager:
        bus = await self._connected_bus()
        assert bus.client is not None
        return bus.client.jsm()

    # --- Ray ---

    async def cleaners_online(self) -> int | None:
        """How many cleaners the presence shards hold as online now; None when unknown."""
        if self.presence is None:
            return None
        candidates = await dashboard.recently_seen_cleaners(
            within_s=self.settings.presence_timeout_s + 2 * self.settings.presence_flush_s)
        if not candidates:
            return 0
        try:
            flags = await asyncio.wait_for(self.presence.online(candidates), RAY_CALL_TIMEOUT_S)
        except Exception as exc:  # a shard restarting or the cluster gone: unknown, not an error
            log.warning("presence shards did not answer: %r", exc)
            return None
        return sum(flags.values())
