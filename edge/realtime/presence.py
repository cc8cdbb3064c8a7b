"""The edge worker's view of presence members, kept in PresenceChannelShard actors so that
every worker sees the same members. Ray failures become a reconnect (4200) for the socket.
The worker heartbeats every shard so that, should it die, the shards drop its sockets."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from actors.presence_channels import presence_channel_shard, presence_channel_shard_at
from core.settings import Settings
from edge.realtime.errors import Unavailable

log = logging.getLogger("spotless.realtime")


class PresenceRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = uuid.uuid4().hex
        self.heartbeats: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.heartbeats = asyncio.get_running_loop().create_task(self._beat_forever())

    async def stop(self) -> None:
        if self.heartbeats is not None:
            self.heartbeats.cancel()

    async def _beat_forever(self) -> None:
        while True:
            for shard in range(self.settings.presence_channel_shards):
                try:
                    await presence_channel_shard_at(self.settings, shard).heartbeat.remote(self.worker_id)
                except Exception:  # keep beating; a shard that is restarting answers next time
                    log.warning("presence heartbeat to shard %s failed", shard, exc_info=True)
            await asyncio.sleep(self.settings.realtime_worker_heartbeat_s)

    async def join(self, app_id: str, channel: str, user_id: str, user_info: Any,
                   socket_id: str) -> tuple[bool, dict[str, Any]]:
        shard = presence_channel_shard(self.settings, app_id, channel)
        try:
            added, members = await shard.join.remote(app_id, channel, user_id, user_info, socket_id,
                                                     self.worker_id)
        except Exception as exc:  # Ray raises several types for an unreachable actor
            raise Unavailable() from exc
        return bool(added), dict(members)

    async def leave(self, app_id: str, channel: str, user_id: str, socket_id: str) -> bool:
        shard = presence_channel_shard(self.settings, app_id, channel)
        try:
            return bool(await shard.leave.remote(app_id, channel, user_id, socket_id))
        except Exception as exc:
            raise Unavailable() from exc
