"""PresenceChannelShard: who is on each presence channel, shared by every edge worker.

A member is a user id; each member has the sockets (devices) it is on, each tagged with the edge
worker holding it. The first socket of a user makes it "added", the last one leaving makes it
"removed", so a user on two devices counts once across all workers. Edge workers publish
member_added/removed for the joins and leaves they make. Workers also send heartbeats; the
sockets of a worker silent for three heartbeat periods (it crashed) are dropped here, and this
shard publishes member_removed for the users that leaves with no socket.

The registry is live state, and the edges hold its copy: each worker remembers the presence
sockets it has joined. A shard that restarts (its process died; Ray brings it back) gets a new
`epoch`; every worker sees the new epoch in its next heartbeat answer and re-announces its live
sockets with `restore`, which adds them without telling anyone (they never left). For three
heartbeat periods (the time after which a silent worker counts as dead) a restarted shard holds
joins and leaves back, so that "added" and "removed" are decided against the whole membership,
not a half-restored one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from typing import Any

import ray

from actors.runtime import shard_name, shard_options
from actors.status import process_facts
from core.events import realtime_subject
from core.realtime import fanout_message, shard_of_channel
from core.settings import Settings
from storage.bus import Bus

log = logging.getLogger("spotless.actors.presence_channels")

ChannelKey = tuple[str, str]  # (app id, channel)
MISSED_HEARTBEATS = 3
# A restarted shard holds joins and leaves back as long as it would take to declare a silent
# worker dead: by then every live worker has re-announced its sockets.
RESTORE_HEARTBEATS = MISSED_HEARTBEATS


@ray.remote
class PresenceChannelShard:
    def __init__(self, settings: Settings, shard: int) -> None:
        self.settings = settings
        self.shard = shard
        # (app, channel) -> user id -> {"info": user_info, "sockets": {socket id: worker id}}
        self.channels: dict[ChannelKey, dict[str, dict[str, Any]]] = {}
        self.workers: dict[str, float] = {}  # worker id -> monotonic time last heard from
        self.bus: Bus | None = None
        self.sweeper: asyncio.Task[None] | None = None
        self.epoch = uuid.uuid4().hex
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self.restoring_until = (time.monotonic() + RESTORE_HEARTBEATS * settings.realtime_worker_heartbeat_s
                                if restarted else 0.0)

    def _heard(self, worker_id: str) -> None:
        self.workers[worker_id] = time.monotonic()
        if self.sweeper is None:
            self.bus = Bus(self.settings.nats_url or "nats://127.0.0.1:4222",
                           name=f"spotless-presence-channels-{self.shard}")
            self.bus.start()
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _restored(self) -> None:
        """After a restart, wait until the workers have had time to re-announce their sockets."""
        wait_s = self.restoring_until - time.monotonic()
        if wait_s > 0:
            await asyncio.sleep(wait_s)

    async def join(
        self, app_id: str, channel: str, user_id: str, user_info: Any, socket_id: str, worker_id: str
    ) -> tuple[bool, dict[str, Any]]:
        """Add a socket of `user_id`; return (whether the user is new here, all members' info)."""
        self._heard(worker_id)
        await self._restored()
        members = self.channels.setdefault((app_id, channel), {})
        member = members.get(user_id)
        added = member is None
        if member is None:
            member = members[user_id] = {"info": user_info, "sockets": {}}
        member["sockets"][socket_id] = worker_id
        return added, {uid: m["info"] for uid, m in members.items()}

    async def leave(self, app_id: str, channel: str, user_id: str, socket_id: str) -> bool:
        """Remove a socket; return whether that was the user's last one on the channel."""
        await self._restored()
        members = self.channels.get((app_id, channel), {})
        member = members.get(user_id)
        if member is None or member["sockets"].pop(socket_id, None) is None:
            return False
        return self._drop_if_gone((app_id, channel), user_id)

    def _drop_if_gone(self, key: ChannelKey, user_id: str) -> bool:
        members = self.channels.get(key, {})
        if user_id not in members or members[user_id]["sockets"]:
            return False
        del members[user_id]
        if not members:
            self.channels.pop(key, None)
        return True

    async def heartbeat(self, worker_id: str) -> str:
        """Note the worker is alive; return this shard's epoch (new after every restart)."""
        self._heard(worker_id)
        return self.epoch

    async def restore(self, worker_id: str, sockets: list[tuple[str, str, str, Any, str]]) -> str:
        """Re-announce a worker's live presence sockets, (app, channel, user, info, socket id),
        after this shard restarted; nobody is told, since none of them left. Returns the epoch."""
        self._heard(worker_id)
        for app_id, channel, user_id, user_info, socket_id in sockets:
            members = self.channels.setdefault((app_id, channel), {})
            member = members.setdefault(user_id, {"info": user_info, "sockets": {}})
            member["sockets"][socket_id] = worker_id
        return self.epoch

    async def sweep(self) -> list[tuple[str, str, str]]:
        """Drop the sockets of silent workers; publish and return the members that left."""
        limit = time.monotonic() - MISSED_HEARTBEATS * self.settings.realtime_worker_heartbeat_s
        dead = {w for w, seen in self.workers.items() if seen < limit}
        removed: list[tuple[str, str, str]] = []
        if not dead:
            return removed
        for key, members in list(self.channels.items()):
            for user_id, member in list(members.items()):
                member["sockets"] = {s: w for s, w in member["sockets"].items() if w not in dead}
                if self._drop_if_gone(key, user_id):
                    removed.append((key[0], key[1], user_id))
        for worker in dead:
            del self.workers[worker]
        for app_id, channel, user_id in removed:
            if self.bus is not None and self.bus.connected:
                await self.bus.client.publish(realtime_subject(channel), fanout_message(  # type: ignore[union-attr]
                    app_id=app_id, channel=channel, event="pusher_internal:member_removed",
                    data={"user_id": user_id}))
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.realtime_worker_heartbeat_s)
            with contextlib.suppress(Exception):
                await self.sweep()

    async def members(self, app_id: str, channel: str) -> dict[str, Any]:
        return {uid: m["info"] for uid, m in self.channels.get((app_id, channel), {}).items()}

    async def watching(self, app_id: str, channels: list[str]) -> list[list[str]]:
        """The users with a socket on each of `channels` (one call for a batch of channels)."""
        return [list(self.channels.get((app_id, channel), {})) for channel in channels]

    async def describe(self) -> dict[str, Any]:
        """What `spotless actors status` shows: presence channels with members, and where it runs."""
        return {"entities": len(self.channels), **process_facts()}

    async def pid(self) -> int:
        return os.getpid()


_handles: dict[tuple[str, int, int], Any] = {}


PRESENCE_CHANNELS_PREFIX = "presence-channels"


def presence_channel_shard_at(settings: Settings, shard: int) -> Any:
    """Shard number `shard` (created on first use, then cached in this process)."""
    count = settings.presence_channel_shards
    key = (settings.ray_namespace, shard, count)
    if key not in _handles:
        _handles[key] = PresenceChannelShard.options(  # type: ignore[attr-defined]
            **shard_options(settings, shard_name(PRESENCE_CHANNELS_PREFIX, shard, count), max_concurrency=1000,
                            max_task_retries=0)
        ).remote(settings, shard)
    return _handles[key]


def presence_channel_shard(settings: Settings, app_id: str, channel: str) -> Any:
    """The shard actor holding this channel's members."""
    return presence_channel_shard_at(
        settings, shard_of_channel(app_id, channel, settings.presence_channel_shards))


async def users_watching(settings: Settings, app_id: str, channels: list[str]) -> dict[str, set[str]]:
    """Who has a socket on each channel, asking each shard once for all of its channels."""
    by_shard: dict[int, list[str]] = {}
    for channel in channels:
        by_shard.setdefault(shard_of_channel(app_id, channel, settings.presence_channel_shards), []).append(channel)
    answers = await asyncio.gather(*(presence_channel_shard_at(settings, shard).watching.remote(app_id, names)
                                     for shard, names in by_shard.items()))
    return {channel: set(users) for names, found in zip(by_shard.values(), answers, strict=True)
            for channel, users in zip(names, found, strict=True)}
