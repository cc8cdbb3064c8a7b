"""Following the shard layout in a process that routes to shards (edge, admin, jobs, shards).

A process routes by the layout in PostgreSQL (storage/shard_layout.py), never by its own
settings: `Layouts` reads each set's row on first use, re-reads it when a rebalance announces a
change on core NATS (`LAYOUT_SUBJECT`, published after commit), and re-reads it when a shard
answers `MOVED` (it retired while this process still had the old layout). A call that got
`MOVED` waits, bounded by `shard_layout_wait_s`, for the new layout to commit, then goes to the
new owner. See docs/decisions/0018-live-resharding.md.

`ShardSet` keeps one kind's actor handles by slot, one slot per (count, shard) pair, so a call
the Coalescer queued under an old layout still goes to the shard it was routed to.
This module never changes the layout: `actors/rebalance.py` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import ray

from core.errors import SpotlessError, Unavailable
from core.settings import Settings
from storage.bus import Bus
from storage.shard_layout import Layout, read_layout

log = logging.getLogger("spotless.actors.layout")

LAYOUT_SUBJECT = "sys.shards.layout"
# A cached layout older than this is re-read in the background on next use: without NATS a
# process still learns of a rebalance that no call of its own noticed.
REFRESH_S = 30.0
RESTART_PAUSE_S = 0.2  # between asks of a shard whose process died, while Ray restarts it
MOVED = "moved"  # what a retired shard answers instead of a result

# What a call to a shard that was killed (a rebalance's old shards) or is gone raises.
SHARD_GONE = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


def default_count(settings: Settings, kind: str) -> int:
    """The count the settings give a kind: used only when no layout row exists yet."""
    return {"spatial": settings.spatial_shards, "presence": settings.presence_shards,
            "conversations": settings.conversation_shards,
            "presence-channels": settings.presence_channel_shards}[kind]


def prefix_of(settings: Settings, kind: str) -> str:
    """The Ray name prefix of a kind's shards in this deployment (one layout row per prefix)."""
    return {"spatial": settings.spatial_shard_prefix, "presence": settings.presence_shard_prefix,
            "conversations": settings.conversation_shard_prefix,
            "presence-channels": settings.presence_channel_shard_prefix}[kind]


class Layouts:
    """This process's view of the layout of every set of shards it routes to.

    `from_database=False` is a fixed layout from the settings, for single-process tools
    (benchmarks, tests of one shard set) that never see a rebalance."""

    def __init__(self, settings: Settings, *, from_database: bool = True) -> None:
        self.settings = settings
        self.from_database = from_database
        self.known: dict[tuple[str, str], Layout] = {}
        self.read_at: dict[tuple[str, str], float] = {}
        self.refreshing: set[asyncio.Task[None]] = set()
        self.previous: dict[tuple[str, str], tuple[int, float]] = {}  # count before the last change, when
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.subscription: Any = None
        self._follow_task: asyncio.Task[None] | None = None

    def _fixed(self, kind: str, prefix: str) -> Layout:
        return Layout(kind, prefix, default_count(self.settings, kind), None, 0, "settings",
                      datetime.fromtimestamp(0, UTC))

    def last_seen(self, kind: str, prefix: str) -> Layout:
        """The layout last read (the settings' count before the first read): no I/O."""
        return self.known.get((kind, prefix)) or self._fixed(kind, prefix)

    def fresh(self, kind: str, prefix: str) -> Layout | None:
        """The layout known and not due for a re-read, or None: `get`'s answer on every call
        but the few that read, without a coroutine (the search path asks it per request)."""
        key = (kind, prefix)
        layout = self.known.get(key)
        return None if layout is None or self._due(key) else layout

    def _due(self, key: tuple[str, str]) -> bool:
        """Whether a layout read from PostgreSQL is old enough to be read again."""
        return self.from_database and time.monotonic() - self.read_at.get(key, 0.0) > REFRESH_S

    async def get(self, kind: str, prefix: str) -> Layout:
        key = (kind, prefix)
        layout = self.known.get(key)
        if layout is not None:
            if self._due(key):
                self.read_at[key] = time.monotonic()
                task = asyncio.get_running_loop().create_task(self._reread(key))
                self.refreshing.add(task)
                task.add_done_callback(self.refreshing.discard)
            return layout
        if not self.from_database:
            layout = self.known[key] = self._fixed(kind, prefix)
            return layout
        async with self.locks.setdefault(key, asyncio.Lock()):
            if key not in self.known:
                self._learn(await self._read(key))
        return self.known[key]

    async def _read(self, key: tuple[str, str]) -> Layout:
        try:
            return await read_layout(key[0], key[1], default_count=default_count(self.settings, key[0]))
        except SpotlessError:
            raise
        except Exception as exc:  # asyncpg and Tortoise raise several types when PostgreSQL is away
            raise Unavailable(dependency="database") from exc

    async def _reread(self, key: tuple[str, str]) -> None:
        try:
            async with self.locks.setdefault(key, asyncio.Lock()):
                self._learn(await self._read(key))
        except Exception:  # the database blinked: keep the cached layout, try again later
            log.warning("could not re-read the %s/%s shard layout", *key, exc_info=True)

    def _learn(self, layout: Layout) -> bool:
        key = (layout.kind, layout.prefix)
        self.read_at[key] = time.monotonic()
        old = self.known.get(key)
        if old is None or layout.epoch > old.epoch or (layout.epoch == old.epoch and layout != old):
            self.known[key] = layout
            if old is not None and layout.epoch > old.epoch:
                self.previous[key] = (old.shard_count, time.monotonic())
                log.info("shard layout %s/%s: %d shards (epoch %d)", layout.kind, layout.prefix,
                         layout.shard_count, layout.epoch)
            return True
        return False

    def previous_count(self, kind: str, prefix: str) -> int | None:
        """The count before the last change while other processes may still use it (twice the
        rebalance grace after this process learned the change), else None."""
        previous = self.previous.get((kind, prefix))
        if previous is None or time.monotonic() - previous[1] > 2 * self.settings.rebalance_grace_s:
            return None
        return previous[0]

    async def after(self, kind: str, prefix: str, epoch: int, *, gone_since: float | None = None) -> Layout:
        """The layout newer than `epoch`: after a shard answered "moved" or vanished. Waits while
        a rebalance commits it, at most `shard_layout_wait_s`; then Unavailable (retryable).

        A shard that vanished (`gone_since`: when the caller first saw it gone) may instead have
        lost its process: Ray restarts it under the same layout. Then, after a short pause, the
        same layout comes back for the caller to ask again, until `shard_layout_wait_s` after
        `gone_since`."""
        key = (kind, prefix)
        deadline = (gone_since or time.monotonic()) + self.settings.shard_layout_wait_s
        while True:
            current = self.known.get(key)
            if current is not None and current.epoch > epoch:
                return current
            if not self.from_database and gone_since is not None and time.monotonic() <= deadline:
                await asyncio.sleep(RESTART_PAUSE_S)  # a fixed layout never moves: ask again
                return current or self._fixed(kind, prefix)
            if not self.from_database or time.monotonic() > deadline:
                raise Unavailable(f"the {kind} shards are being rebalanced; try again",
                                  dependency="shards", retry_after_s=1)
            # One reader per set at a time; the others find its answer in `known`.
            async with self.locks.setdefault(key, asyncio.Lock()):
                current = self.known.get(key)
                if current is None or current.epoch <= epoch:
                    self._learn(await self._read(key))
                    current = self.known[key]
                    if current.epoch <= epoch:
                        await asyncio.sleep(RESTART_PAUSE_S if gone_since is not None else 0.05)
            if gone_since is not None and current is not None and current.epoch <= epoch \
                    and time.monotonic() <= deadline:
                return current  # not moved: ask the restarting shard again

    # --- following announcements ---

    def follow(self, bus: Bus) -> None:
        """Re-read a set's layout as soon as a rebalance announces it (in the background)."""
        if self.from_database and self._follow_task is None:
            self._follow_task = asyncio.get_running_loop().create_task(self._follow(bus))

    async def _follow(self, bus: Bus) -> None:
        while not await bus.wait_connected(5.0):
            pass
        assert bus.client is not None
        self.subscription = await bus.client.subscribe(LAYOUT_SUBJECT, cb=self._announced)

    async def _announced(self, msg: Any) -> None:
        try:
            note = json.loads(msg.data)
            if note.get("namespace") != self.settings.ray_namespace:
                return  # another deployment sharing the NATS server
            key = (str(note["kind"]), str(note["prefix"]))
            if key in self.known and int(note["epoch"]) > self.known[key].epoch:
                await self._reread(key)
        except Exception:  # a bad note must not kill the subscription; "moved" still works
            log.exception("could not follow a shard layout announcement")

    async def stop(self) -> None:
        for task in list(self.refreshing):
            task.cancel()
        if self._follow_task is not None:
            self._follow_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follow_task
        if self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.subscription.unsubscribe()


async def call_owner(layouts: Layouts, kind: str, prefix: str, call: Callable[[Layout], Awaitable[Any]]) -> Any:
    """`call(layout)` asks the owner(s) under that layout; when an owner answers
    MOVED (retired) or is gone (killed after a rebalance, or restarting), wait for the newer
    layout (or the restarted shard) and call again. Raises Unavailable after
    `shard_layout_wait_s`."""
    layout = layouts.fresh(kind, prefix) or await layouts.get(kind, prefix)
    gone_since: float | None = None
    while True:
        try:
            result = await call(layout)
        except SHARD_GONE:
            gone_since = gone_since or time.monotonic()
            layout = await layouts.after(kind, prefix, layout.epoch, gone_since=gone_since)
            continue
        if not (isinstance(result, str) and result == MOVED):
            return result
        layout = await layouts.after(kind, prefix, layout.epoch)


def layout_note(settings: Settings, layout: Layout) -> bytes:
    """The body of a `LAYOUT_SUBJECT` announcement."""
    return json.dumps({"namespace": settings.ray_namespace, "kind": layout.kind, "prefix": layout.prefix,
                       "shard_count": layout.shard_count, "epoch": layout.epoch}).encode()


class ShardSet:
    """One kind's actor handles, each (count, shard) under its own slot number for good.

    Callers that pass the epoch of the layout they route by get a fresh handle when the set of
    that count was made again since (a rebalance away from the count and back: the old actors
    were killed, new ones carry the names), in the same slot."""

    def __init__(self, make: Callable[[int, int], Any]) -> None:
        self.make = make  # make(shard, count) -> the actor handle, created on first use
        self.slots: dict[tuple[int, int], int] = {}
        self.handles: list[Any] = []
        self.epochs: dict[int, int] = {}  # slot -> the layout epoch its handle was last asked under

    def slot(self, shard: int, count: int, epoch: int | None = None) -> int:
        key = (count, shard)
        slot = self.slots.get(key)
        if slot is None:
            self.handles.append(self.make(shard, count))
            slot = self.slots[key] = len(self.handles) - 1
        if epoch is not None and epoch > self.epochs.setdefault(slot, epoch):
            # Each epoch changes the count, so a later epoch naming this count made it anew.
            self.handles[slot] = self.make(shard, count)
            self.epochs[slot] = epoch
        return slot

    def __getitem__(self, slot: int) -> Any:
        return self.handles[slot]

    def of(self, count: int, epoch: int | None = None) -> list[Any]:
        """Every shard of one count, in shard order."""
        return [self.handles[self.slot(shard, count, epoch)] for shard in range(count)]

    def existing(self, count: int) -> dict[int, Any]:
        """The handles of one count made so far, by shard: never creates an actor (an old
        count's shards may be dead, and asking by name would start them again)."""
        return {shard: self.handles[slot] for (c, shard), slot in self.slots.items() if c == count}
