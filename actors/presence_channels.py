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

The set's count follows the shard layout (actors/layout.py) like every other kind's. When a
rebalance moves it, the old shards `retire` (stop sweeping, answer MOVED to everything) and
`hand_over` moves their registry into the new shards with the same `restore` the workers use,
each worker's sockets with how long that worker has been silent, before the new count commits:
the new shards start with the whole membership, nobody is told anything, and the dead-worker
sweep goes on where it was (docs/decisions/0018-live-resharding.md).

For Pusher's channel query API the shards also say how many users each presence channel has,
and which workers are alive (heard within three heartbeats): the workers whose counts a query
waits for (edge/realtime/census.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from typing import Any

import asyncpg
import ray

from actors.layout import MOVED, Layouts, ShardSet, call_owner, prefix_of
from actors.runtime import shard_name, shard_options, shard_process_started
from actors.status import process_facts
from core.events import realtime_subject
from core.realtime import fanout_message, shard_of_channel
from core.settings import Settings
from storage.bus import Bus
from storage.db import asyncpg_dsn
from storage.shard_layout import Layout, counts_in_force

log = logging.getLogger("spotless.actors.presence_channels")

KIND = "presence-channels"  # in the shard layout
ChannelKey = tuple[str, str]  # (app id, channel)
Socket = tuple[str, str, str, Any, str]  # (app id, channel, user id, user info, socket id)
MISSED_HEARTBEATS = 3
# A restarted shard holds joins and leaves back as long as it would take to declare a silent
# worker dead: by then every live worker has re-announced its sockets.
RESTORE_HEARTBEATS = MISSED_HEARTBEATS


@ray.remote
class PresenceChannelShard:
    def __init__(self, settings: Settings, shard: int, shard_count: int | None = None,
                 prefix: str | None = None) -> None:
        shard_process_started()
        self.settings = settings
        self.shard = shard
        self.shard_count = shard_count or settings.presence_channel_shards
        self.prefix = prefix or settings.presence_channel_shard_prefix
        # (app, channel) -> user id -> {"info": user_info, "sockets": {socket id: worker id}}
        self.channels: dict[ChannelKey, dict[str, dict[str, Any]]] = {}
        self.workers: dict[str, float] = {}  # worker id -> monotonic time last heard from
        self.bus: Bus | None = None
        self.sweeper: asyncio.Task[None] | None = None
        self.epoch = uuid.uuid4().hex
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self.restoring_until = (time.monotonic() + RESTORE_HEARTBEATS * settings.realtime_worker_heartbeat_s
                                if restarted else 0.0)
        # Retired (by a rebalance, or at birth when the layout has no place for this count), a
        # shard answers every call with MOVED and sweeps nobody.
        self.retired = False
        self.checked: asyncio.Task[None] | None = None

    async def _ready(self) -> None:
        """Once, on the first call: a shard whose count the layout names neither as current nor
        as pending was made by a process with a stale layout (or restarted after its set was
        retired), and must never serve: a second registry of the same channels."""
        if self.checked is None:
            self.checked = asyncio.get_running_loop().create_task(self._check_layout())
        if not self.checked.done():  # every call after the first skips the await (the hot path)
            await asyncio.shield(self.checked)

    async def _check_layout(self) -> None:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(self.settings.database_url), timeout=5)
            try:
                counts = await counts_in_force(conn, KIND, self.prefix)
            finally:
                await conn.close()
        except Exception:  # the database is away: serve (the common case is a current shard)
            log.warning("presence-channel shard %d of %d could not read the layout", self.shard,
                        self.shard_count, exc_info=True)
            return
        if counts is not None and self.shard_count not in counts:
            log.warning("presence-channel shard %d of %d is not in the layout (%s); retired",
                        self.shard, self.shard_count, sorted(counts))
            self._retire()

    def _heard(self, worker_id: str, silent_s: float = 0.0) -> None:
        heard = time.monotonic() - silent_s
        self.workers[worker_id] = max(self.workers.get(worker_id, heard), heard)
        if self.sweeper is None and not self.retired:
            if self.bus is None:
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
    ) -> tuple[bool, dict[str, Any]] | str:
        """Add a socket of `user_id`; return (whether the user is new here, all members' info)."""
        await self._ready()
        await self._restored()
        if self.retired:  # checked after the awaits: what follows runs without yielding
            return MOVED
        self._heard(worker_id)
        members = self.channels.setdefault((app_id, channel), {})
        member = members.get(user_id)
        added = member is None
        if member is None:
            member = members[user_id] = {"info": user_info, "sockets": {}}
        member["sockets"][socket_id] = worker_id
        return added, {uid: m["info"] for uid, m in members.items()}

    async def leave(self, app_id: str, channel: str, user_id: str, socket_id: str) -> bool | str:
        """Remove a socket; return whether that was the user's last one on the channel."""
        await self._ready()
        await self._restored()
        if self.retired:
            return MOVED
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
        await self._ready()
        if self.retired:
            return MOVED
        self._heard(worker_id)
        return self.epoch

    async def restore(self, worker_id: str, sockets: list[Socket], silent_s: float = 0.0) -> str:
        """Re-announce a worker's live presence sockets, (app, channel, user, info, socket id):
        by the worker after this shard restarted, or by a rebalance handing the registry over
        (`silent_s`: how long the old shard had not heard from the worker). Nobody is told,
        since none of them left. Returns the epoch."""
        await self._ready()
        if self.retired:
            return MOVED
        self._heard(worker_id, silent_s)
        for app_id, channel, user_id, user_info, socket_id in sockets:
            members = self.channels.setdefault((app_id, channel), {})
            member = members.setdefault(user_id, {"info": user_info, "sockets": {}})
            member["sockets"][socket_id] = worker_id
        return self.epoch

    async def sweep(self) -> list[tuple[str, str, str]]:
        """Drop the sockets of silent workers; publish and return the members that left."""
        if self.retired:
            return []  # the registry is the new shards' now: they sweep
        limit = self._alive_since()
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

    async def members(self, app_id: str, channel: str) -> dict[str, Any] | str:
        await self._ready()
        if self.retired:
            return MOVED
        return {uid: m["info"] for uid, m in self.channels.get((app_id, channel), {}).items()}

    async def watching(self, app_id: str, channels: list[str]) -> list[list[str]] | str:
        """The users with a socket on each of `channels` (one call for a batch of channels)."""
        await self._ready()
        if self.retired:
            return MOVED
        return [list(self.channels.get((app_id, channel), {})) for channel in channels]

    async def member_counts(self, app_id: str, channels: list[str]) -> list[int] | str:
        """How many users each of `channels` has (one call for a batch of channels)."""
        await self._ready()
        if self.retired:
            return MOVED
        return [len(self.channels.get((app_id, channel), {})) for channel in channels]

    async def live_workers(self) -> list[str] | str:
        """The edge workers heard from within the heartbeats after which one counts as dead."""
        await self._ready()
        if self.retired:
            return MOVED
        limit = self._alive_since()
        return [worker for worker, seen in self.workers.items() if seen >= limit]

    def _alive_since(self) -> float:
        """A worker last heard before this moment (time.monotonic) counts as dead."""
        return time.monotonic() - MISSED_HEARTBEATS * self.settings.realtime_worker_heartbeat_s

    async def describe(self) -> dict[str, Any]:
        """What `spotless actors status` shows: presence channels with members, and where it runs."""
        return {"entities": len(self.channels), **process_facts()}

    async def pid(self) -> int:
        return os.getpid()

    # --- rebalancing (actors/rebalance.py) ---

    def _retire(self) -> None:
        self.retired = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None

    async def retire(self) -> int:
        """Stop serving and sweeping: the registry is about to be handed to a new shard set
        (`registry`); from now on every call answers MOVED. Returns how many members it holds."""
        self._retire()
        return sum(len(members) for members in self.channels.values())

    async def registry(self) -> list[tuple[str, float, list[Socket]]]:
        """Every socket held, per worker with how long that worker has been silent: what the
        new shards `restore` from."""
        now = time.monotonic()
        by_worker: dict[str, list[Socket]] = {}
        for (app_id, channel), members in self.channels.items():
            for user_id, member in members.items():
                for socket_id, worker_id in member["sockets"].items():
                    by_worker.setdefault(worker_id, []).append((app_id, channel, user_id, member["info"], socket_id))
        return [(worker_id, max(0.0, now - self.workers.get(worker_id, now)), sockets)
                for worker_id, sockets in by_worker.items()]

    async def resume(self) -> None:
        """Serve again (a rebalance that failed before committing)."""
        self.retired = False
        if self.sweeper is None and self.bus is not None:
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())


def presence_channel_shard(settings: Settings, shard: int, *, count: int | None = None,
                           prefix: str | None = None) -> Any:
    """The handle of one named presence-channel shard of `count` (the settings' count if not
    given), created on first use."""
    count = count or settings.presence_channel_shards
    prefix = prefix or settings.presence_channel_shard_prefix
    return PresenceChannelShard.options(  # type: ignore[attr-defined]
        **shard_options(settings, shard_name(prefix, shard, count), max_concurrency=1000, max_task_retries=0)
    ).remote(settings, shard, count, prefix)


async def hand_over(old: list[Any], new: list[Any]) -> int:
    """Move the registry of retired shards `old` into the shards `new` (of a new count), with
    `restore`; returns how many sockets moved. Idempotent: sockets are keyed by id."""
    registries = await asyncio.gather(*(shard.registry.remote() for shard in old))
    calls = []
    for registry in registries:
        for worker_id, silent_s, sockets in registry:
            by_shard: dict[int, list[Socket]] = {}
            for socket in sockets:
                by_shard.setdefault(shard_of_channel(socket[0], socket[1], len(new)), []).append(socket)
            calls += [new[shard].restore.remote(worker_id, part, silent_s) for shard, part in by_shard.items()]
    answers = await asyncio.gather(*calls)
    if MOVED in answers:
        raise RuntimeError("a new presence-channel shard is not in the layout")
    return sum(len(sockets) for registry in registries for _, _, sockets in registry)


class PresenceChannels:
    """Calls to the presence-channel shards by the layout: a shard that answers MOVED (retired
    by a rebalance) or is gone gets the call again at its new owner (actors/layout.py)."""

    def __init__(self, settings: Settings, *, layouts: Layouts | None = None, prefix: str | None = None) -> None:
        self.settings = settings
        self.prefix = prefix or prefix_of(settings, KIND)
        self.layouts = layouts or Layouts(settings)
        self.sets = ShardSet(lambda shard, count: presence_channel_shard(settings, shard, count=count,
                                                                         prefix=self.prefix))

    def shard(self, shard: int, layout: Layout) -> Any:
        return self.sets[self.sets.slot(shard, layout.shard_count, layout.epoch)]

    def owner(self, app_id: str, channel: str, layout: Layout) -> Any:
        """The shard holding a channel's members under `layout`."""
        return self.shard(shard_of_channel(app_id, channel, layout.shard_count), layout)

    async def call(self, app_id: str, channel: str, method: str, *args: Any) -> Any:
        """`method(*args)` on the shard holding the channel, wherever the layout puts it now."""
        return await call_owner(self.layouts, KIND, self.prefix,
                                lambda layout: getattr(self.owner(app_id, channel, layout), method).remote(*args))

    async def watching(self, app_id: str, channels: list[str]) -> dict[str, set[str]]:
        """Who has a socket on each channel, asking each shard once for all of its channels."""
        found = await self._per_channel("watching", app_id, channels)
        return {channel: set(users) for channel, users in found.items()}

    async def member_counts(self, app_id: str, channels: list[str]) -> dict[str, int]:
        """How many users each channel has, asking each shard once for all of its channels."""
        counts: dict[str, int] = await self._per_channel("member_counts", app_id, channels)
        return counts

    async def _per_channel(self, method: str, app_id: str, channels: list[str]) -> dict[str, Any]:
        """`method(app_id, names)` on each shard holding some of `channels`, in one call per
        shard; the answers (one per name, in order) by channel."""

        async def ask(layout: Layout) -> dict[str, Any] | str:
            by_shard: dict[int, list[str]] = {}
            for channel in channels:
                by_shard.setdefault(shard_of_channel(app_id, channel, layout.shard_count), []).append(channel)
            answers = await asyncio.gather(*(getattr(self.shard(shard, layout), method).remote(app_id, names)
                                             for shard, names in by_shard.items()))
            if MOVED in answers:
                return MOVED
            return {channel: answer for names, found in zip(by_shard.values(), answers, strict=True)
                    for channel, answer in zip(names, found, strict=True)}

        found: dict[str, Any] = await call_owner(self.layouts, KIND, self.prefix, ask)
        return found

    async def live_workers(self) -> set[str]:
        """The edge workers any shard has heard from lately (each worker heartbeats every shard,
        so one that restarted and has not heard a round yet does not hide them)."""

        async def ask(layout: Layout) -> set[str] | str:
            answers = await asyncio.gather(*(self.shard(shard, layout).live_workers.remote()
                                             for shard in range(layout.shard_count)))
            if MOVED in answers:
                return MOVED
            return {worker for workers in answers for worker in workers}

        alive: set[str] = await call_owner(self.layouts, KIND, self.prefix, ask)
        return alive
