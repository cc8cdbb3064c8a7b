"""The edge worker's view of presence members, kept in PresenceChannelShard actors so that
every worker sees the same members. Ray failures become a reconnect (4200) for the socket.

The worker heartbeats every shard so that, should it die, the shards drop its sockets. It also
keeps its own presence sockets per shard, so that when a heartbeat answers with a new epoch (the
shard restarted empty) it re-announces them and the shard's member lists survive the restart."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from actors.presence_channels import presence_channel_shard_at
from core.realtime import shard_of_channel
from core.settings import Settings
from edge.realtime.errors import Unavailable

log = logging.getLogger("spotless.realtime")

SocketKey = tuple[str, str, str]  # (app id, channel, socket id)
RETRY_S = 0.2  # seconds between heartbeats while a shard does not answer


class PresenceRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = uuid.uuid4().hex
        self.heartbeats: asyncio.Task[None] | None = None
        # shard -> this worker's sockets on its channels -> (user id, user info)
        self.local: dict[int, dict[SocketKey, tuple[str, Any]]] = {}
        self.epochs: dict[int, str] = {}  # shard -> the epoch it last answered with

    def start(self) -> None:
        self.heartbeats = asyncio.get_running_loop().create_task(self._beat_forever())

    async def stop(self) -> None:
        if self.heartbeats is not None:
            self.heartbeats.cancel()

    async def _beat_forever(self) -> None:
        while True:
            failed = False
            for shard in range(self.settings.presence_channel_shards):
                try:
                    await self.beat(shard)
                except Exception:  # a shard that is restarting answers soon: retry quickly, so
                    failed = True  # that its members are restored before it serves joins
                    log.warning("presence heartbeat to shard %s failed", shard, exc_info=True)
            period = self.settings.realtime_worker_heartbeat_s
            await asyncio.sleep(min(RETRY_S, period) if failed else period)

    async def beat(self, shard: int) -> None:
        """Heartbeat one shard; re-announce this worker's sockets if it restarted since."""
        actor = presence_channel_shard_at(self.settings, shard)
        epoch = await actor.heartbeat.remote(self.worker_id)
        if self.epochs.get(shard, epoch) != epoch and self.local.get(shard):
            sockets = [(app_id, channel, user_id, info, socket_id)
                       for (app_id, channel, socket_id), (user_id, info) in self.local[shard].items()]
            epoch = await actor.restore.remote(self.worker_id, sockets)
            log.warning("presence shard %s restarted; re-announced %d sockets", shard, len(sockets))
        self.epochs[shard] = epoch

    def _shard(self, app_id: str, channel: str) -> int:
        return shard_of_channel(app_id, channel, self.settings.presence_channel_shards)

    async def join(self, app_id: str, channel: str, user_id: str, user_info: Any,
                   socket_id: str) -> tuple[bool, dict[str, Any]]:
        shard = self._shard(app_id, channel)
        try:
            added, members = await presence_channel_shard_at(self.settings, shard).join.remote(
                app_id, channel, user_id, user_info, socket_id, self.worker_id)
        except Exception as exc:  # Ray raises several types for an unreachable actor
            raise Unavailable() from exc
        # Only once joined: a restore racing the join must not make the user look "not new".
        self.local.setdefault(shard, {})[(app_id, channel, socket_id)] = (user_id, user_info)
        return bool(added), dict(members)

    async def leave(self, app_id: str, channel: str, user_id: str, socket_id: str) -> bool:
        shard = self._shard(app_id, channel)
        # Forget it first: a restore racing the leave must not bring the socket back for good.
        self.local.get(shard, {}).pop((app_id, channel, socket_id), None)
        try:
            return bool(await presence_channel_shard_at(self.settings, shard).leave.remote(
                app_id, channel, user_id, socket_id))
        except Exception as exc:
            raise Unavailable() from exc
