"""`spotless actors rebalance`: change shard counts on a live system (docs/decisions/0018).

Per kind whose count changes, in this order:
1. the layout records the count it moves to (`pending_count`), so shards of that count may serve;
   the new shards are created, and spatial ones load their index before any query reaches them;
2. conversation, presence and presence-channel shards of the old count retire: calls in flight
   finish (a conversation shard persisted every message it acknowledged; a presence shard writes
   its cleaners' last_seen to PostgreSQL), later calls answer "moved"; the presence-channel
   registry, live state that is in no table, is handed to the new shards (`hand_over`);
3. the new count is committed (epoch + 1) and announced on core NATS (`LAYOUT_SUBJECT`); callers
   that got "moved" re-read the layout and retry on the new owner, which loads from PostgreSQL;
4. after `rebalance_grace_s` the old shards are killed; new spatial shards catch up on area
   changes committed while processes switched (once after the commit, once after the kill).
If anything fails before the commit, the pending count is dropped and the old shards serve again.

This module is the only writer of the layout besides a first reader; it never routes requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from actors.conversations import conversation_shard
from actors.layout import LAYOUT_SUBJECT, default_count, layout_note, prefix_of
from actors.presence import presence_shard
from actors.presence_channels import hand_over, presence_channel_shard
from actors.runtime import shard_name
from actors.spatial import spatial_shard
from core.settings import Settings
from storage.bus import Bus
from storage.shard_layout import (
    KINDS,
    abandon_change,
    begin_change,
    check_count,
    commit_change,
    read_layout,
)

log = logging.getLogger("spotless.actors.rebalance")


@dataclass(frozen=True)
class KindChange:
    """What a rebalance did to one kind: counts before and after, the epoch now in force, and
    how many entities the old shards handed over (conversations held, cleaners written) or the
    new spatial shards caught up on."""

    kind: str
    prefix: str
    before: int
    after: int
    epoch: int
    handed_over: int = 0

    def describe(self) -> str:
        if self.before == self.after:
            return f"{self.kind:<14} {self.prefix}: {self.after} shards, unchanged (epoch {self.epoch})"
        return (f"{self.kind:<14} {self.prefix}: {self.before} -> {self.after} shards (epoch {self.epoch}); "
                f"{self.handed_over} handed over")


def shard_factory(settings: Settings, kind: str) -> Callable[[int, int], Any]:
    """make(shard, count): the handle of one shard of `kind`, created on first use."""
    prefix = prefix_of(settings, kind)
    if kind == "spatial":
        return lambda shard, count: spatial_shard(settings, shard, count=count, prefix=prefix)
    if kind == "presence":
        return lambda shard, count: presence_shard(settings, shard, count=count, prefix=prefix)
    if kind == "presence-channels":
        return lambda shard, count: presence_channel_shard(settings, shard, count=count, prefix=prefix)
    return lambda shard, count: conversation_shard(settings, shard, count=count, prefix=prefix)


async def rebalance(settings: Settings, counts: dict[str, int], *, bus: Bus | None, changed_by: str,
                    grace_s: float | None = None) -> list[KindChange]:
    """Move each kind in `counts` to its new shard count; kinds run side by side. Needs the
    database open (Tortoise) and Ray connected; `bus` (connected) announces each new layout."""
    for kind, count in counts.items():
        check_count(kind, count)
    grace = settings.rebalance_grace_s if grace_s is None else grace_s
    kinds = [kind for kind in KINDS if kind in counts]
    return list(await asyncio.gather(*(
        _rebalance_kind(settings, kind, counts[kind], bus=bus, changed_by=changed_by, grace_s=grace)
        for kind in kinds)))


async def _rebalance_kind(settings: Settings, kind: str, count: int, *, bus: Bus | None, changed_by: str,
                          grace_s: float) -> KindChange:
    prefix, make = prefix_of(settings, kind), shard_factory(settings, kind)
    current = await read_layout(kind, prefix, default_count=default_count(settings, kind))
    stray = current.pending_count  # left by a rebalance that died before committing
    if count == current.shard_count:
        if stray is not None:  # running again with the current count undoes it
            await abandon_change(kind, prefix, epoch=current.epoch)
            if kind != "spatial":
                await asyncio.gather(*(make(i, count).resume.remote() for i in range(count)))
            kill_shards(settings, prefix, stray)
        return KindChange(kind, prefix, count, count, current.epoch)
    old = [make(i, current.shard_count) for i in range(current.shard_count)]
    pending = await begin_change(kind, prefix, shard_count=count, default_count=current.shard_count,
                                 changed_by=changed_by)
    if stray is not None and stray != count:
        kill_shards(settings, prefix, stray)
    new = [make(i, count) for i in range(count)]
    handed_over = 0
    try:
        if kind == "spatial":
            # Loaded (one snapshot each) before the layout sends them a single query.
            await asyncio.gather(*(shard.catch_up.remote() for shard in new))
        else:
            # Alive but not loaded: they load from PostgreSQL after the old ones handed over.
            await asyncio.gather(*(shard.pid.remote() for shard in new))
            handed_over = sum(await asyncio.gather(*(shard.retire.remote() for shard in old)))
            if kind == "presence-channels":  # live state, not in PostgreSQL: moved shard to shard
                await hand_over(old, new)
        layout = await commit_change(kind, prefix, epoch=pending.epoch, changed_by=changed_by)
    except BaseException:
        log.exception("rebalancing %s/%s to %d failed; the old shards serve on", kind, prefix, count)
        await asyncio.shield(_undo(settings, kind, prefix, pending.epoch, old, count))
        raise
    if bus is not None and bus.connected and bus.client is not None:
        await bus.client.publish(LAYOUT_SUBJECT, layout_note(settings, layout))
        await bus.client.flush()
    log.info("%s/%s now %d shards (epoch %d)", kind, prefix, count, layout.epoch)
    if kind == "spatial":
        handed_over += sum(await asyncio.gather(*(shard.catch_up.remote() for shard in new)))
    await asyncio.sleep(grace_s)  # processes that missed the announcement get "moved" meanwhile
    for shard in old:
        ray.kill(shard, no_restart=True)
    await until_gone(settings, prefix, current.shard_count)
    if kind == "spatial":
        handed_over += sum(await asyncio.gather(*(shard.catch_up.remote() for shard in new)))
    return KindChange(kind, prefix, current.shard_count, count, layout.epoch, handed_over)


async def _undo(settings: Settings, kind: str, prefix: str, epoch: int, old: list[Any], count: int) -> None:
    await abandon_change(kind, prefix, epoch=epoch)
    if kind != "spatial":
        await asyncio.gather(*(shard.resume.remote() for shard in old), return_exceptions=True)
    kill_shards(settings, prefix, count)


async def until_gone(settings: Settings, prefix: str, count: int, *, timeout_s: float = 10.0) -> None:
    """Wait until no shard of `count` answers to its name any more: `ray.kill` only asks the
    GCS, and a rebalance that returns promises the old shards are gone (a busy cluster took
    long enough for a lookup right after it to find one)."""
    deadline = time.monotonic() + timeout_s
    for shard in range(count):
        while time.monotonic() < deadline:
            try:
                ray.get_actor(shard_name(prefix, shard, count), namespace=settings.ray_namespace)
            except ValueError:
                break
            await asyncio.sleep(0.05)


def kill_shards(settings: Settings, prefix: str, count: int) -> None:
    """Kill the shards of one count that exist, without creating any."""
    for shard in range(count):
        try:
            actor = ray.get_actor(shard_name(prefix, shard, count), namespace=settings.ray_namespace)
        except ValueError:
            continue
        ray.kill(actor, no_restart=True)
