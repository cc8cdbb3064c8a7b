"""Edge-side clients of the shard actors, one per edge worker, that coalesce concurrent calls.

A Ray round trip costs about a millisecond, so one call per search request would cap a worker
near a thousand searches a second. Instead every request bound for a shard joins that shard's
queue; at most `shard_client_max_inflight` calls per shard are in flight, and each carries all
requests that queued meanwhile. Under light load a request leaves on the next loop tick (no
added latency); under heavy load batches grow with the load.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from actors.presence import presence_shard
from actors.spatial import spatial_shard
from core.settings import Settings
from core.sharding import shard_of_cleaner, shard_of_point, shards_of_box


class Coalescer:
    """Queues items per (shard, method) and sends each queue as one call with a list of items.

    `send(shard, method, items)` must return an awaitable of one result per item.
    """

    def __init__(self, send: Callable[[int, str, list[Any]], Any], *, max_inflight: int) -> None:
        self.send = send
        self.max_inflight = max(1, max_inflight)
        self.queues: dict[tuple[int, str], list[tuple[Any, asyncio.Future[Any]]]] = defaultdict(list)
        self.inflight: dict[tuple[int, str], int] = defaultdict(int)
        self.batches = 0  # how many calls went out (observability, tests)

    async def call(self, shard: int, method: str, item: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        key = (shard, method)
        self.queues[key].append((item, future))
        if len(self.queues[key]) == 1 and self.inflight[key] < self.max_inflight:
            # Let the other requests of this loop tick join before the call leaves.
            asyncio.get_running_loop().call_soon(self._dispatch, key)
        return await future

    def _dispatch(self, key: tuple[int, str]) -> None:
        if not self.queues[key] or self.inflight[key] >= self.max_inflight:
            return
        batch, self.queues[key] = self.queues[key], []
        self.inflight[key] += 1
        self.batches += 1
        asyncio.get_running_loop().create_task(self._run(key, batch))

    async def _run(self, key: tuple[int, str], batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            results = await self.send(key[0], key[1], [item for item, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self.inflight[key] -= 1
            # Dispatch after the callers just answered have run: one that asks again at once
            # (a closed loop, a handler with a second point) rides this next call, not the one after.
            asyncio.get_running_loop().call_soon(self._dispatch, key)


class SpatialClient:
    """Finds which cleaners' areas cover a point, through the spatial shards."""

    def __init__(self, settings: Settings, *, prefix: str | None = None) -> None:
        self.settings = settings
        self.shards = [spatial_shard(settings, i, prefix=prefix) for i in range(settings.spatial_shards)]
        self.coalescer = Coalescer(self._send, max_inflight=settings.shard_client_max_inflight)

    def _send(self, shard: int, method: str, items: list[Any]) -> Any:
        if method == "find":
            return self._find_batch(self.shards[shard], items)
        raise ValueError(method)

    @staticmethod
    async def _find_batch(actor: Any, points: list[tuple[float, float]]) -> list[list[tuple[str, float]]]:
        """One Ray call for a batch of points: an (n, 2) array out, three flat arrays back (point
        index, id bytes, distance), cut here into one list per point."""
        which, ids, distances = await actor.find.remote(np.array(points, dtype=np.float64))
        cuts = np.searchsorted(which, np.arange(len(points) + 1)).tolist()
        pairs = list(zip(ids.astype(np.str_).tolist(), distances.tolist(), strict=True))
        return [pairs[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]

    def shard_of(self, lat: float, lng: float) -> int:
        return int(shard_of_point(lat, lng, cell_deg=self.settings.spatial_cell_deg,
                                  shard_count=len(self.shards)))

    async def find(self, lat: float, lng: float) -> list[tuple[str, float]]:
        """(cleaner_id, distance_m to the area's representative point) for every covering area."""
        found: list[tuple[str, float]] = await self.coalescer.call(self.shard_of(lat, lng), "find", (lat, lng))
        return found

    async def apply(self, change: Any) -> None:
        """Send one committed change (a storage.service_areas.AreaChange) to the shards.

        Shards whose cells the new box touches get the area; shards that only the previous box
        touched get a deletion at the same version, so a moved area leaves no stale copy behind.
        """
        def owners(bbox: tuple[float, float, float, float] | None) -> set[int]:
            if bbox is None:
                return set()
            owned = shards_of_box(*bbox, cell_deg=self.settings.spatial_cell_deg,
                                  shard_count=len(self.shards))[0]
            return {int(i) for i in owned.nonzero()[0]}

        new = owners(change.bbox) if change.geojson is not None else set()
        gone = (owners(change.bbox) | owners(change.previous_bbox)) - new
        calls = [self.shards[i].apply.remote([(change.cleaner_id, change.version, change.geojson)])
                 for i in new]
        calls += [self.shards[i].apply.remote([(change.cleaner_id, change.version, None)]) for i in gone]
        await asyncio.gather(*calls)


class PresenceClient:
    """Heartbeats and online lookups through the presence shards, coalesced per shard."""

    def __init__(self, settings: Settings, *, prefix: str | None = None) -> None:
        self.shards = [presence_shard(settings, i, prefix=prefix) for i in range(settings.presence_shards)]
        self.coalescer = Coalescer(self._send, max_inflight=settings.shard_client_max_inflight)

    def _send(self, shard: int, method: str, items: list[Any]) -> Any:
        actor = self.shards[shard]
        if method == "heartbeat":
            return _each(actor.heartbeat.remote(items), len(items))
        return getattr(actor, method).remote(items)

    def shard_of(self, cleaner_id: str) -> int:
        return shard_of_cleaner(cleaner_id, len(self.shards))

    async def heartbeat(self, cleaner_id: str, lat: float, lng: float) -> None:
        await self.coalescer.call(self.shard_of(cleaner_id), "heartbeat", (cleaner_id, lat, lng))

    async def online(self, cleaner_ids: list[str]) -> dict[str, bool]:
        flags = await asyncio.gather(
            *(self.coalescer.call(self.shard_of(c), "online", c) for c in cleaner_ids))
        return dict(zip(cleaner_ids, flags, strict=True))


async def _each(ref: Any, n: int) -> list[None]:
    await ref
    return [None] * n
