"""SpatialShard: the service areas of one share of the world's cells, answering "who serves here".

Cells are a fixed 0.5° lon/lat grid (docs/decisions/0003-spatial-cells.md): a point's cell is
one floor() per coordinate, vectorised over a whole batch, and an area's cells follow from its
bounding box alone, so a shard finds its areas in PostgreSQL from the bbox columns without
parsing a single polygon it does not own. Cells map to shards by `core.sharding.shard_of_cell`.

The index is a shapely 2 STRtree over every area the shard owns, plus a delta (areas written
since the build) and tombstones (tree entries since replaced or deleted). Queries consult all
three, so writes are visible at once. When the delta grows past `spatial_rebuild_delta`, a new
tree is built in a worker thread from a snapshot and swapped in with one synchronous assignment
on the event loop, so no request ever sees a half-built index.

Postgres is the truth. A shard loads lazily on its first call (and again after Ray restarts
it), in two bulk queries: bounding boxes of every area, then geometry of the ones it owns.
This module never writes to the database.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np
import ray
import shapely

from actors.runtime import shard_options
from core.geometry import haversine_m
from core.settings import Settings
from core.sharding import shards_of_box
from storage.db import asyncpg_dsn

log = logging.getLogger("spotless.actors.spatial")


@dataclass
class _Index:
    """One built STRtree and what its positions mean. Never mutated except `tombstoned`."""

    tree: shapely.STRtree
    ids: np.ndarray  # cleaner id per tree position
    rep_lat: np.ndarray
    rep_lng: np.ndarray
    position: dict[str, int] = field(default_factory=dict)
    tombstoned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


def _build_index(entries: list[tuple[str, Any, float, float]]) -> _Index:
    ids = np.array([e[0] for e in entries], dtype=object)
    tree = shapely.STRtree([e[1] for e in entries])
    return _Index(
        tree=tree, ids=ids,
        rep_lat=np.array([e[2] for e in entries], dtype=np.float64),
        rep_lng=np.array([e[3] for e in entries], dtype=np.float64),
        position={cid: i for i, cid in enumerate(ids)},
        tombstoned=np.zeros(len(entries), dtype=bool),
    )


def _return_freed_memory() -> None:
    """Give the loader's transient memory (JSON text, records) back to the OS after a load."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc; the memory is reused by the process instead


def _entry(cleaner_id: str, geometry: Any) -> tuple[str, Any, float, float]:
    rep = shapely.point_on_surface(geometry)
    return cleaner_id, geometry, rep.y, rep.x


@ray.remote
class SpatialShard:
    def __init__(self, settings: Settings, shard: int, shard_count: int) -> None:
        self.settings = settings
        self.shard = shard
        self.shard_count = shard_count
        self.areas: dict[str, tuple[int, tuple[str, Any, float, float]]] = {}  # id -> (version, entry)
        self.index = _build_index([])
        self.delta: dict[str, tuple[str, Any, float, float]] = {}
        self.changed_during_build: set[str] | None = None
        self.rebuilding: asyncio.Task[None] | None = None
        self.loaded = False
        self.load_lock: asyncio.Lock | None = None

    async def _ensure_loaded(self) -> None:
        if self.loaded:
            return
        if self.load_lock is None:
            self.load_lock = asyncio.Lock()
        async with self.load_lock:
            if not self.loaded:
                await self._load()
                self.loaded = True

    async def _load(self) -> None:
        conn = await asyncpg.connect(asyncpg_dsn(self.settings.database_url))
        # One snapshot for both queries, so an area moved in between is seen in one place only;
        # changes committed after it reach us through apply(), which waits for this load.
        tx = conn.transaction(isolation="repeatable_read", readonly=True)
        await tx.start()
        try:
            boxes = await conn.fetch(
                "SELECT cleaner_id::text AS id, min_lat, min_lng, max_lat, max_lng FROM service_areas")
            mine: list[str] = []
            if boxes:
                box = np.array([(r[1], r[2], r[3], r[4]) for r in boxes], dtype=np.float64)
                owned = shards_of_box(box[:, 0], box[:, 1], box[:, 2], box[:, 3],
                                      cell_deg=self.settings.spatial_cell_deg,
                                      shard_count=self.shard_count)[:, self.shard]
                mine = [boxes[i][0] for i in np.flatnonzero(owned)]
            rows = await conn.fetch(
                "SELECT cleaner_id::text, geojson::text, version FROM service_areas "
                "WHERE cleaner_id = ANY($1::uuid[])", mine) if mine else []
        finally:
            await tx.rollback()
            await conn.close()
        geometries = shapely.from_geojson([r[1] for r in rows]) if rows else []
        entries = [_entry(r[0], g) for r, g in zip(rows, geometries, strict=True)]
        self.areas = {e[0]: (r[2], e) for r, e in zip(rows, entries, strict=True)}
        self.index = await asyncio.to_thread(_build_index, entries)
        self.delta = {}
        del rows, boxes, geometries
        _return_freed_memory()
        log.info("spatial shard %d/%d loaded %d areas", self.shard, self.shard_count, len(entries))

    # --- writes (called by the edge after the database transaction committed) ---

    def _tombstone(self, cleaner_id: str) -> None:
        pos = self.index.position.get(cleaner_id)
        if pos is not None:
            self.index.tombstoned[pos] = True
        if self.changed_during_build is not None:
            self.changed_during_build.add(cleaner_id)

    async def apply(self, changes: list[tuple[str, int, str | None]]) -> int:
        """Apply (cleaner_id, version, geojson or None for deleted); older versions are ignored."""
        await self._ensure_loaded()
        applied = 0
        new = [c for c in changes if c[0] not in self.areas or self.areas[c[0]][0] < c[1]]
        geometries = shapely.from_geojson([c[2] for c in new if c[2] is not None])
        it = iter(geometries)
        for cleaner_id, version, geojson in new:
            self._tombstone(cleaner_id)
            self.delta.pop(cleaner_id, None)
            if geojson is None:
                # A deletion keeps its version so a late, older upsert cannot resurrect it.
                self.areas[cleaner_id] = (version, ("", None, 0.0, 0.0))
            else:
                entry = _entry(cleaner_id, next(it))
                self.areas[cleaner_id] = (version, entry)
                self.delta[cleaner_id] = entry
            applied += 1
        if len(self.delta) + int(self.index.tombstoned.sum()) > self.settings.spatial_rebuild_delta:
            self._schedule_rebuild()
        return applied

    def _schedule_rebuild(self) -> None:
        if self.rebuilding is None or self.rebuilding.done():
            self.rebuilding = asyncio.get_running_loop().create_task(self._rebuild())

    async def _rebuild(self) -> None:
        snapshot = [e for _, e in self.areas.values() if e[1] is not None]
        self.changed_during_build = set()
        try:
            index = await asyncio.to_thread(_build_index, snapshot)
        except BaseException:
            self.changed_during_build = None
            raise
        # Swap in one synchronous step: anything written while building stays in the delta.
        changed, self.changed_during_build = self.changed_during_build, None
        for cleaner_id in changed:
            pos = index.position.get(cleaner_id)
            if pos is not None:
                index.tombstoned[pos] = True
        self.delta = {cid: self.areas[cid][1] for cid in changed
                      if cid in self.areas and self.areas[cid][1][1] is not None}
        self.index = index

    # --- reads ---

    async def find(self, lats: list[float], lngs: list[float]) -> list[tuple[list[str], list[float]]]:
        """For each point, the cleaners whose area covers it and the distance in metres from the
        point to each area's representative point. One bulk STRtree query for the whole batch."""
        await self._ensure_loaded()
        lat = np.asarray(lats, dtype=np.float64)
        lng = np.asarray(lngs, dtype=np.float64)
        points = shapely.points(lng, lat)
        index = self.index
        result: list[tuple[list[str], list[float]]] = [([], []) for _ in range(len(points))]
        if len(index.ids):
            which, pos = index.tree.query(points, predicate="intersects")
            live = ~index.tombstoned[pos]
            which, pos = which[live], pos[live]
            if len(which) > 1 and bool((np.diff(which) < 0).any()):
                order = np.argsort(which, kind="stable")
                which, pos = which[order], pos[order]
            dist = haversine_m(lat[which], lng[which], index.rep_lat[pos], index.rep_lng[pos]).tolist()
            ids = index.ids[pos].tolist()
            # query() returns pairs ordered by input point: cut the flat lists at each new point.
            cuts = np.searchsorted(which, np.arange(len(points) + 1)).tolist()
            for w in np.unique(which).tolist():
                a, b = cuts[w], cuts[w + 1]
                result[w] = (ids[a:b], dist[a:b])
        if self.delta:
            entries = list(self.delta.values())
            geoms = np.array([e[1] for e in entries], dtype=object)
            shapely.prepare(geoms)
            hits = shapely.intersects(geoms[:, None], points[None, :])
            for g, w in zip(*np.nonzero(hits), strict=True):
                cid, _, rlat, rlng = entries[g]
                result[w][0].append(cid)
                result[w][1].append(float(haversine_m(lat[w], lng[w], rlat, rlng)))
        return result

    async def stats(self) -> dict[str, Any]:
        await self._ensure_loaded()
        return {"shard": self.shard, "areas": sum(1 for _, e in self.areas.values() if e[1] is not None),
                "tree": len(self.index.ids), "delta": len(self.delta),
                "tombstones": int(self.index.tombstoned.sum()),
                "rebuilding": self.rebuilding is not None and not self.rebuilding.done()}

    async def rebuild_now(self) -> None:
        """Build a fresh tree and wait for it (tests, operators)."""
        await self._ensure_loaded()
        self._schedule_rebuild()
        assert self.rebuilding is not None
        await self.rebuilding

    async def pid(self) -> int:
        import os

        return os.getpid()


def spatial_shard(settings: Settings, shard: int, *, prefix: str | None = None) -> Any:
    """The handle of one named spatial shard, created on first use."""
    count = settings.spatial_shards
    name = f"{prefix or settings.spatial_shard_prefix}-{shard}-of-{count}"
    return SpatialShard.options(**shard_options(settings, name)).remote(  # type: ignore[attr-defined]
        settings, shard, count)
