"""The edge worker's view of presence members, kept in PresenceChannelShard actors so that
every worker sees the same members. Ray failures become a reconnect (4200) for the socket.

The worker heartbeats every shard so that, should it die, the shards drop its sockets. It also
keeps its own presence sockets, so that when a heartbeat answers with a new epoch (the shard
restarted empty) it re-announces the ones that shard holds and its member lists survive the
restart. Which shard holds a channel follows the shard layout (actors/layout.py): a shard that
a rebalance retired answers "moved", and the call goes to the new owner, which the rebalance
gave the whole registry before the new count committed (docs/decisions/0018)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from actors.layout import MOVED, Layouts, call_owner
from actors.presence_channels import KIND, PresenceChannels
from core.realtime import shard_of_channel
from core.settings import Settings
from edge.realtime.errors import Unavailable
from storage.shard_layout import Layout

log = logging.getLogger("spotless.realtime")

SocketKey = tuple[str, str, str]  # (app id, channel, socket id)
RETRY_S = 0.2  # seconds between heartbeats while a shard does not answer


class PresenceRegistry:
    def __init__(self, settings: Settings, *, layouts: Layouts | None = None) -> None:
        self.settings = settings
        self.worker_id = uuid.uuid4().hex
        self.heartbeats: asyncio.Task[None] | None = None
        # Without the process's `layouts` (followed over NATS) it keeps its own: it then learns
        # of a rebalance from "moved" answers, which its heartbeats get within one period.
        self.own_layouts = layouts is None
        self.shards = PresenceChannels(settings, layouts=layouts)
        # this worker's sockets on presence channels -> (user id, user info)
        self.local: dict[SocketKey, tuple[str, Any]] = {}
        # (layout epoch, shard) -> the epoch (a new one after every restart) it last answered with
        self.epochs: dict[tuple[int, int], str] = {}

    def start(self) -> None:
        self.heartbeats = asyncio.get_running_loop().create_task(self._beat_forever())

    async def stop(self) -> None:
        if self.heartbeats is not None:
            self.heartbeats.cancel()
        if self.own_layouts:
            await self.shards.layouts.stop()

    async def _beat_forever(self) -> None:
        while True:
            failed = False
            try:
                await self.beat()
            except Exception:  # a shard that is restarting answers soon: retry quickly, so
                failed = True  # that its members are restored before it serves joins
                log.warning("presence heartbeat failed", exc_info=True)
            period = self.settings.realtime_worker_heartbeat_s
            await asyncio.sleep(min(RETRY_S, period) if failed else period)

    async def beat(self) -> None:
        """Heartbeat every shard of the layout; re-announce this worker's sockets to one that
        restarted since. A retired (or killed) set sends the round to the new layout."""

        async def round_of(layout: Layout) -> str | None:
            # Epochs are remembered per layout: a set made anew is not a restarted one.
            self.epochs = {key: epoch for key, epoch in self.epochs.items() if key[0] == layout.epoch}
            answers = await asyncio.gather(*(self._beat_one(shard, layout) for shard in range(layout.shard_count)))
            return MOVED if MOVED in answers else None

        await call_owner(self.shards.layouts, KIND, self.shards.prefix, round_of)

    async def _beat_one(self, shard: int, layout: Layout) -> str:
        actor = self.shards.shard(shard, layout)
        epoch: str = await actor.heartbeat.remote(self.worker_id)
        if epoch != MOVED and self.epochs.get((layout.epoch, shard), epoch) != epoch:
            sockets = [(app_id, channel, user_id, info, socket_id)
                       for (app_id, channel, socket_id), (user_id, info) in self.local.items()
                       if shard_of_channel(app_id, channel, layout.shard_count) == shard]
            if sockets:
                epoch = await actor.restore.remote(self.worker_id, sockets)
                log.warning("presence shard %s of %s restarted; re-announced %d sockets", shard,
                            layout.shard_count, len(sockets))
        if epoch != MOVED:
            self.epochs[(layout.epoch, shard)] = epoch
        return epoch

    async def join(self, app_id: str, channel: str, user_id: str, user_info: Any,
                   socket_id: str) -> tuple[bool, dict[str, Any]]:
        try:
            added, members = await self.shards.call(app_id, channel, "join", app_id, channel, user_id,
                                                    user_info, socket_id, self.worker_id)
        except Exception as exc:  # Ray raises several types for an unreachable actor
            raise Unavailable() from exc
        # Only once joined: a restore racing the join must not make the user look "not new".
        self.local[(app_id, channel, socket_id)] = (user_id, user_info)
        return bool(added), dict(members)

    async def leave(self, app_id: str, channel: str, user_id: str, socket_id: str) -> bool:
        # Forget it first: a restore racing the leave must not bring the socket back for good.
        self.local.pop((app_id, channel, socket_id), None)
        try:
            return bool(await self.shards.call(app_id, channel, "leave", app_id, channel, user_id, socket_id))
        except Exception as exc:
            raise Unavailable() from exc
