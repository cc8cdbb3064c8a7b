"""Edge-side clients of the shard actors, one per edge worker, that coalesce concurrent calls.

A Ray round trip costs about a millisecond, so one call per search request would cap a worker
near a thousand searches a second. Instead every request bound for a shard joins that shard's
queue; at most `shard_client_max_inflight` calls per shard are in flight, and each carries all
requests that queued meanwhile. Under light load a request leaves on the next loop tick (no
added latency); under heavy load batches grow with the load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from actors.layout import MOVED, SHARD_GONE, Layouts, ShardSet, call_owner
from actors.presence import presence_shard
from actors.spatial import spatial_shard, unpack_found
from core.batching import Coalescer
from core.settings import Settings
from core.sharding import shard_of_cleaner, shard_of_one_point, shards_of_box
from storage.shard_layout import Layout


class SpatialClient:
    """Finds which cleaners' areas cover a point, through the spatial shards of the layout.

    Without `layouts` it routes by the settings' count (single-process tools and tests); every
    serving process passes its `Layouts`, which follows rebalances (actors/layout.py)."""

    kind = "spatial"

    def __init__(self, settings: Settings, *, prefix: str | None = None, layouts: Layouts | None = None) -> None:
        self.settings = settings
        self.prefix = prefix or settings.spatial_shard_prefix
        self.layouts = layouts or Layouts(settings, from_database=False)
        self.sets = ShardSet(lambda shard, count: spatial_shard(settings, shard, count=count, prefix=self.prefix))
        self.coalescer = Coalescer(self._send, max_inflight=settings.shard_client_max_inflight)

    @property
    def shards(self) -> list[Any]:
        """The shards of the layout last seen, in shard order."""
        layout = self.layouts.last_seen(self.kind, self.prefix)
        return self.sets.of(layout.shard_count, layout.epoch)

    def _send(self, slot: int, method: str, items: list[Any]) -> Any:
        if method == "find":
            return self._find_batch(self.sets[slot], items)
        raise ValueError(method)

    @staticmethod
    async def _find_batch(actor: Any, points: list[tuple[float, float]]) -> list[list[tuple[str, float]]]:
        """One Ray call for a batch of points: the bytes of an (n, 2) array out, the packed
        answer back (areas per point, distances, ids), cut here into one list per point."""
        raw = await actor.find.remote(np.array(points, dtype=np.float64).tobytes())
        counts, ids, distances = unpack_found(raw, len(points))
        cuts = np.concatenate(([0], np.cumsum(counts))).tolist()
        pairs = list(zip(ids, distances.tolist(), strict=True))
        return [pairs[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]

    def shard_of(self, lat: float, lng: float, count: int | None = None) -> int:
        count = count or self.layouts.last_seen(self.kind, self.prefix).shard_count
        return shard_of_one_point(float(lat), float(lng), self.settings.spatial_cell_deg, count)

    async def find(self, lat: float, lng: float) -> list[tuple[str, float]]:
        """(cleaner_id, distance_m to the area's representative point) for every covering area."""
        found: list[tuple[str, float]] = await call_owner(
            self.layouts, self.kind, self.prefix, lambda layout: self._queue_find(layout, lat, lng))
        return found

    def _queue_find(self, layout: Layout, lat: float, lng: float) -> Any:
        # Routed without the generic owner/slot lambdas: this runs once per search, 64 searches
        # to a batch, and those layers were a quarter of the edge's own CPU per search.
        count = layout.shard_count
        shard = shard_of_one_point(lat, lng, self.settings.spatial_cell_deg, count)
        return self.coalescer.call(self.sets.slot(shard, count, layout.epoch), "find", (lat, lng))

    async def apply(self, change: Any) -> None:
        """Send one committed change (a storage.service_areas.AreaChange) to the shards.

        Shards whose cells the new box touches get the area; shards that only the previous box
        touched get a deletion at the same version, so a moved area leaves no stale copy behind.
        Right after a rebalance the previous set gets it too (best effort), for processes that
        still search there; the new set's catch-up covers anything this misses."""
        layout = await self.layouts.get(self.kind, self.prefix)
        gone_since: float | None = None
        while True:
            try:
                await self._apply_to(change, layout.shard_count, dict(enumerate(self.sets.of(
                    layout.shard_count, layout.epoch))))
                break
            except SHARD_GONE:
                gone_since = gone_since or time.monotonic()
                layout = await self.layouts.after(self.kind, self.prefix, layout.epoch, gone_since=gone_since)
        previous = self.layouts.previous_count(self.kind, self.prefix)
        if previous is not None and previous != layout.shard_count:
            try:
                await self._apply_to(change, previous, self.sets.existing(previous))
            except SHARD_GONE:
                pass  # the old set is gone already: nobody searches there any more

    async def _apply_to(self, change: Any, count: int, to: dict[int, Any]) -> None:
        def owners(bbox: tuple[float, float, float, float] | None) -> set[int]:
            if bbox is None:
                return set()
            owned = shards_of_box(*bbox, cell_deg=self.settings.spatial_cell_deg, shard_count=count)[0]
            return {int(i) for i in owned.nonzero()[0]}

        new = owners(change.bbox) if change.geojson is not None else set()
        gone = (owners(change.bbox) | owners(change.previous_bbox)) - new
        calls = [to[i].apply.remote([(change.cleaner_id, change.version, change.geojson)]) for i in new if i in to]
        calls += [to[i].apply.remote([(change.cleaner_id, change.version, None)]) for i in gone if i in to]
        await asyncio.gather(*calls)


class PresenceClient:
    """Heartbeats and online lookups through the presence shards of the layout, coalesced per
    shard. Without `layouts` it routes by the settings' count, as SpatialClient does."""

    kind = "presence"

    def __init__(self, settings: Settings, *, prefix: str | None = None, layouts: Layouts | None = None) -> None:
        self.prefix = prefix or settings.presence_shard_prefix
        self.layouts = layouts or Layouts(settings, from_database=False)
        self.sets = ShardSet(lambda shard, count: presence_shard(settings, shard, count=count, prefix=self.prefix))
        self.coalescer = Coalescer(self._send, max_inflight=settings.shard_client_max_inflight)

    @property
    def shards(self) -> list[Any]:
        """The shards of the layout last seen, in shard order."""
        layout = self.layouts.last_seen(self.kind, self.prefix)
        return self.sets.of(layout.shard_count, layout.epoch)

    def _send(self, slot: int, method: str, items: list[Any]) -> Any:
        actor = self.sets[slot]
        if method == "heartbeat":
            return _each(actor.heartbeat.remote(items), len(items))
        return _per_item(getattr(actor, method).remote(items), len(items))

    def shard_of(self, cleaner_id: str, count: int | None = None) -> int:
        return shard_of_cleaner(cleaner_id, count or self.layouts.last_seen(self.kind, self.prefix).shard_count)

    async def _call(self, cleaner_id: str, method: str, item: Any) -> Any:
        return await _call_owner(self.layouts, self.kind, self.prefix, self.sets, self.coalescer,
                                 lambda count: self.shard_of(cleaner_id, count), method, item)

    async def heartbeat(self, cleaner_id: str, lat: float, lng: float) -> None:
        await self._call(cleaner_id, "heartbeat", (cleaner_id, lat, lng))

    async def online(self, cleaner_ids: list[str]) -> dict[str, bool]:
        flags = await asyncio.gather(*(self._call(c, "online", c) for c in cleaner_ids))
        return dict(zip(cleaner_ids, flags, strict=True))


def _call_owner(layouts: Layouts, kind: str, prefix: str, sets: ShardSet, coalescer: Coalescer,
                owner: Callable[[int], int], method: str, item: Any) -> Awaitable[Any]:
    """Call the shard that owns `item` under the layout, through its coalescing queue (moved
    and gone owners are handled by `call_owner`)."""
    return call_owner(layouts, kind, prefix,
                      lambda layout: coalescer.call(sets.slot(owner(layout.shard_count), layout.shard_count,
                                                              layout.epoch), method, item))


async def _each(ref: Any, n: int) -> list[Any]:
    answer = await ref
    return [MOVED] * n if answer == MOVED else [None] * n


async def _per_item(ref: Any, n: int) -> list[Any]:
    answer = await ref
    return [MOVED] * n if isinstance(answer, str) and answer == MOVED else answer
