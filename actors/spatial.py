"""SpatialShard: the service areas of one share of the world's cells, answering "who serves here".

Cells are a fixed 0.5° lon/lat grid (docs/decisions/0003-spatial-cells.md): a point's cell is
one floor() per coordinate, vectorised over a whole batch, and an area's cells follow from its
bounding box alone, so a shard finds its areas in PostgreSQL from the bbox columns without
parsing a single polygon it does not own. Cells map to shards by `core.sharding.shard_of_cell`.

The index is a shapely 2 STRtree over every area the shard owns, plus a delta (areas written
since the build) and tombstones (tree entries since replaced or deleted). Each area also keeps,
worked out when the tree is built, a centre inside it and for 32 angular sectors around that
centre a distance within which the sector is all inside the area and one beyond which it is all
outside (`_sectors`), and its rings' vertices. One compiled pass (actors/spatial_kernels.py)
gives every bounding-box candidate its verdict: the sectors decide about four in five on
round-ish areas, the even-odd rule over the rings the rest, and GEOS's exact test is left only
the points within a millionth of the area's radius of an edge (1 cm on a 10 km area). Queries
consult all three, so writes are visible at once. When the delta grows past
`spatial_rebuild_delta`, a new tree is built in a thread from a snapshot, and the next
call swaps it in before it does anything else, so no request ever sees a half-built index.

Postgres is the truth. A shard loads lazily on its first call (and again after Ray restarts
it), in two bulk queries: bounding boxes of every area, then geometry of the ones it owns.
This module never writes to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np
import ray
import shapely

from actors.runtime import shard_name, shard_options, shard_process_started
from actors.status import process_facts
from core.geometry import haversine_radians_m
from core.settings import Settings
from core.sharding import shards_of_box
from storage.db import asyncpg_dsn

log = logging.getLogger("spotless.actors.spatial")


@dataclass
class _Index:
    """One built STRtree and what its positions mean. Never mutated except `tombstoned`.

    The columns `_covering` gathers in numpy are one-dimensional, one `take` each: numpy's
    two-dimensional fancy indexing costs five to ten times as much (a batch's 1,800 ids: 23 µs
    from an (n, 16) array, 2 as one value each)."""

    tree: shapely.STRtree
    geometries: np.ndarray  # the tree's geometries, by tree position
    ids: np.ndarray  # cleaner id per tree position, as `_id_array` keeps it
    rep_lat: np.ndarray  # a point inside each area (the distance is measured to it), in radians
    rep_lng: np.ndarray
    rep_cos: np.ndarray  # cos(rep_lat)
    # What `decide` reads, compact because a batch's candidates are scattered over the index
    # and waiting on memory is most of its time:
    frame: np.ndarray  # (n, 3) float64: the centre's x, y (a point inside the area), and the quantum
    # its sector bounds count in (squared degrees; inf for an area the sectors cannot judge)
    bounds: np.ndarray  # (n * SECTORS, 2) uint8: area i's sector k at row i * SECTORS + k, in quanta, the
    # squared distance from the centre within which all is inside (rounded down) and beyond which
    # all is outside (rounded up): 64 bytes an area, one cache line, against 256 as float32
    vertex_start: np.ndarray  # (n + 1,) int64: area i's rings are rows vertex_start[i]:vertex_start[i + 1] of
    vertices: np.ndarray  # (v, 2) float32 x, y less the area's centre: every ring closed, a NaN row after each
    position: dict[str, int] = field(default_factory=dict)
    tombstoned: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


# Margins that keep both shortcuts on the safe side of floating-point error: a point within 1e-6
# of a radius of a bound gets the exact test.
_INNER_SHRINK = (1 - 1e-6) ** 2
_OUTER_GROW = (1 + 1e-6) ** 2
SECTORS = 32  # angular sectors per area; open candidates per point: 27.1 with none, 6.1 with 16, 4.9 with 32
_SECTOR_SLACK = 1e-6  # radians an edge's angular span is widened by, for atan2's rounding
_THIN = 1e-7  # degrees (about 1 cm): an area narrower than this around its centre always gets the exact test


def _sector_floor(angle: np.ndarray) -> np.ndarray:
    """The sector an angle (radians, from atan2) falls in, before wrapping to 0..SECTORS-1: the
    one numbering both the edges' spans (built) and the points (`decide`, the same arithmetic
    on one number at a time) are put in."""
    return np.floor((angle + np.pi) * (SECTORS / (2 * np.pi))).astype(np.int64)


def _sectors(geometries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each area a centre inside it, and in each of `SECTORS` angular sectors around that
    centre the squared distance within which everything is inside the area and beyond which
    nothing is: (n, 2) float64 centres and (n, SECTORS, 2) float32 (inner², outer²) bounds.

    The centre is the centroid when the area contains it, else a point on its surface. Each edge
    of every ring (holes and all parts included) counts in every sector its angular span touches,
    with its distance to the centre (the nearest any of its points comes) lowering that sector's
    inner bound and its farther end raising the outer one. A point in a sector nearer than the
    inner bound sees no edge on its way from the centre, so it lies inside; one beyond the outer
    bound has every crossing of its ray behind it, so it lies outside. On round-ish areas this
    leaves about a fifth of the bounding-box candidates to the exact test, which was four
    fifths of a query's cost when every candidate had it.

    Also every area's rings as `decide` walks them: (n + 1,) row offsets and (v, 2) float32
    vertices relative to the centre, each ring closed and followed by a NaN row."""
    n = len(geometries)
    centre = np.zeros((n, 2), dtype=np.float64)
    bounds = np.zeros((n, SECTORS, 2), dtype=np.float32)
    if not n:
        return centre, bounds, np.zeros(1, dtype=np.int64), np.zeros((0, 2), dtype=np.float32)
    points = shapely.centroid(geometries)
    outside = ~shapely.contains(geometries, points)
    if outside.any():
        points[outside] = shapely.point_on_surface(geometries[outside])
    centre[:, 0], centre[:, 1] = shapely.get_x(points), shapely.get_y(points)
    parts, part_owner = shapely.get_parts(geometries, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    edge = np.flatnonzero(ring_of[1:] == ring_of[:-1])  # vertex k to k + 1 within one ring
    area = part_owner[ring_part[ring_of[edge]]]
    ax, ay = xy[edge, 0] - centre[area, 0], xy[edge, 1] - centre[area, 1]
    bx, by = xy[edge + 1, 0] - centre[area, 0], xy[edge + 1, 1] - centre[area, 1]
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = np.clip(-(ax * dx + ay * dy) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    near2 = (ax + t * dx) ** 2 + (ay + t * dy) ** 2
    far2 = np.maximum(ax * ax + ay * ay, bx * bx + by * by)
    start = np.arctan2(ay, ax)
    turn = (np.arctan2(by, bx) - start + np.pi) % (2 * np.pi) - np.pi  # the shorter way round
    low = np.where(turn >= 0, start, start + turn) - _SECTOR_SLACK
    first = _sector_floor(low)
    last = _sector_floor(low + np.abs(turn) + 2 * _SECTOR_SLACK)
    inner = np.full(n * SECTORS, np.inf)
    outer = np.zeros(n * SECTORS)
    for step in range(int((last - first).max()) + 1 if len(edge) else 0):
        chosen = np.flatnonzero(last - first >= step)
        flat = area[chosen] * SECTORS + (first[chosen] + step) % SECTORS
        np.minimum.at(inner, flat, near2[chosen])
        np.maximum.at(outer, flat, far2[chosen])
    inner, outer = inner.reshape(n, SECTORS), outer.reshape(n, SECTORS)
    # A sector no edge reaches would mean a centre outside the area (never, by construction);
    # such an area and a thin one always get the exact test.
    thin = (inner.min(axis=1) < _THIN**2) | ~np.isfinite(inner).all(axis=1)
    inner[thin], outer[thin] = 0.0, np.inf
    bounds[:, :, 0] = inner * _INNER_SHRINK
    bounds[:, :, 1] = outer * _OUTER_GROW
    # Rings one after another (get_rings keeps areas in order), a NaN row after each.
    row = np.arange(len(xy)) + ring_of  # each ring's rows shifted past the separators before it
    vertices = np.full((len(xy) + len(rings), 2), np.nan, dtype=np.float32)
    of_vertex = part_owner[ring_part[ring_of]]
    vertices[row] = xy - centre[of_vertex]
    owner = np.full(len(vertices), -1, dtype=np.int64)
    owner[row] = of_vertex
    owner = np.maximum.accumulate(owner)  # a separator belongs to the area of the ring before it
    vertex_start = np.searchsorted(owner, np.arange(n + 1)).astype(np.int64)
    return centre, bounds, vertex_start, vertices


def _quantised(centre: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_sectors`' centres and float32 bounds as `_Index.frame` and `_Index.bounds`: each area's
    bounds in 255ths of its largest outer bound, inner ones rounded down and outer ones up, so
    that either still only ever says what is sure (a band 0.2% of the radius wider, at most)."""
    n = len(centre)
    inner, outer = bounds[:, :, 0].astype(np.float64), bounds[:, :, 1].astype(np.float64)
    judged = np.isfinite(outer).all(axis=1)  # thin areas have (0, inf) everywhere: always open
    scale = np.where(judged, outer.max(axis=1, initial=0.0, where=np.isfinite(outer)), np.inf)
    scale[judged & (scale <= 0)] = np.inf
    unit = np.where(np.isfinite(scale), scale, 1.0)[:, None]
    q_in = np.clip(np.floor(inner / unit * 255), 0, 255)
    q_out = np.clip(np.ceil(outer / unit * 255), 0, 255)  # a thin area's inf outer bounds clip to 255
    frame = np.empty((n, 3), dtype=np.float64)
    frame[:, :2] = centre
    frame[:, 2] = scale / 255
    packed = np.empty((n * SECTORS, 2), dtype=np.uint8)
    packed[:, 0], packed[:, 1] = q_in.ravel(), q_out.ravel()
    return frame, packed


NEAR = 1e-6  # of an area's radius: a point this near one of its edges is left to GEOS (borders count as
# inside there), which also covers the float32 vertices' rounding (6e-8 of the radius at most)
NEAR_MIN = 1e-9  # degrees (0.1 mm), for tiny areas


ID_WIDTH = 37  # an id as the shards keep and send it: its 36 characters of canonical text and a space


def _id_array(ids: list[str]) -> np.ndarray:
    """Each id as `ID_WIDTH` bytes of text (numpy "S37"): a batch's are gathered in one `take`
    and sent as they are, so the edge makes its strings with one decode and one split instead of
    formatting a thousand UUIDs a batch (a third of what it spent on a batch's answer)."""
    return np.array([f"{uuid.UUID(cid)} ".encode() for cid in ids], dtype=f"S{ID_WIDTH}")


def pack_found(counts: np.ndarray, ids: np.ndarray, distances: np.ndarray) -> bytes:
    """`find`'s answer as one bytes object: int32 areas per point (n), then the m covering
    areas' distances in metres (float32), then their ids (`ID_WIDTH` bytes of text each)."""
    return (np.asarray(counts, dtype=np.int32).tobytes() + np.asarray(distances, dtype=np.float32).tobytes()
            + np.ascontiguousarray(ids, dtype=f"S{ID_WIDTH}").tobytes())


def unpack_found(raw: bytes, n: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The (counts, ids as strings, distances) that `pack_found` packed for n points."""
    counts = np.frombuffer(raw, dtype=np.int32, count=n)
    m = int(counts.sum())
    distances = np.frombuffer(raw, dtype=np.float32, count=m, offset=4 * n)
    return counts, str(memoryview(raw)[4 * (n + m):], "ascii").split(), distances


def _build_index(entries: list[tuple[str, Any, float, float]]) -> _Index:
    geometries = np.empty(len(entries), dtype=object)
    geometries[:] = [e[1] for e in entries]
    centre, bounds, vertex_start, vertices = _sectors(geometries)
    frame, packed = _quantised(centre, bounds)
    rep_lat = np.radians(np.array([e[2] for e in entries], dtype=np.float64))
    return _Index(
        tree=shapely.STRtree(geometries), geometries=geometries,
        ids=_id_array([e[0] for e in entries]),
        rep_lat=rep_lat, rep_lng=np.radians(np.array([e[3] for e in entries], dtype=np.float64)),
        rep_cos=np.cos(rep_lat),
        frame=frame, bounds=packed,
        vertex_start=vertex_start, vertices=vertices,
        position={e[0]: i for i, e in enumerate(entries)},
        tombstoned=np.zeros(len(entries), dtype=bool),
    )


@dataclass
class _Batch:
    """A `find` call's points, in each form `_covering` needs them: geometries for the tree,
    degrees for the exact test, radians and cosines for the distances."""

    points: np.ndarray  # shapely points
    lat: np.ndarray
    lng: np.ndarray
    lat_r: np.ndarray
    lng_r: np.ndarray
    cos_lat: np.ndarray

    @classmethod
    def of(cls, lat: np.ndarray, lng: np.ndarray) -> _Batch:
        lat_r = np.radians(lat)
        return cls(shapely.points(lng, lat), lat, lng, lat_r, np.radians(lng), np.cos(lat_r))


def _covering(index: _Index, batch: _Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point index, id, distance in metres to the area's representative point) of every live
    area in `index` covering a point, ordered by point: bounding-box candidates from the tree,
    `decide`'s verdicts on those, then GEOS's exact test on the few by a border."""
    # Imported here, on a shard's first search: only processes that search load numba and the
    # compiled kernel (half a second; 1.4 s when it compiles, the first time on a machine),
    # next to the load from PostgreSQL that any shard's first call waits for anyway.
    from actors.spatial_kernels import decide

    which, pos = index.tree.query(batch.points)
    x, y = batch.lng.take(which), batch.lat.take(which)
    verdict = decide(pos, x, y, index.tombstoned, index.frame, index.bounds, index.vertex_start, index.vertices)
    near = np.flatnonzero(verdict == 2)
    if len(near):
        verdict[near] = shapely.intersects_xy(index.geometries.take(pos[near]), x[near], y[near])
    inside = verdict == 1
    which, pos = which[inside], pos[inside]
    if len(which) > 1 and bool((np.diff(which) < 0).any()):
        order = np.argsort(which, kind="stable")
        which, pos = which[order], pos[order]
    distance = haversine_radians_m(batch.lat_r.take(which), batch.lng_r.take(which), batch.cos_lat.take(which),
                                   index.rep_lat.take(pos), index.rep_lng.take(pos), index.rep_cos.take(pos))
    return which, index.ids.take(pos), distance


@dataclass
class _Served:
    """What `find` has done since the process started: calls, points and CPU time inside it (the
    rest of a shard's CPU is Ray's per-call cost), for operators and the benchmark."""

    calls: int = 0
    points: int = 0
    cpu_s: float = 0.0

    def __iadd__(self, one: tuple[int, int, float]) -> _Served:
        self.calls, self.points, self.cpu_s = self.calls + one[0], self.points + one[1], self.cpu_s + one[2]
        return self


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


async def _read_owned(settings: Settings, shard: int, shard_count: int) -> list[asyncpg.Record]:
    """(id, geojson, version) of every area this shard owns, from one snapshot: bounding boxes of
    every area first (ownership is worked out from them alone), then the geometry of its own."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    # One snapshot for both queries, so an area moved in between is seen in one place only;
    # changes committed after it reach the shard through apply(), which waits for the load.
    tx = conn.transaction(isolation="repeatable_read", readonly=True)
    await tx.start()
    try:
        boxes = await conn.fetch(
            "SELECT cleaner_id::text AS id, min_lat, min_lng, max_lat, max_lng FROM service_areas")
        mine = [boxes[i][0] for i in _owned(settings, boxes, shard, shard_count)]
        # Neighbours first: geometries parsed in this order sit next to each other in memory,
        # so the few dozen areas one point's test touches share cache lines (1.5x faster).
        return await conn.fetch(
            "SELECT cleaner_id::text, geojson::text, version FROM service_areas "
            "WHERE cleaner_id = ANY($1::uuid[]) "
            "ORDER BY floor((min_lat + max_lat) * 10), min_lng + max_lng", mine) if mine else []
    finally:
        await tx.rollback()
        await conn.close()


async def _read_changed(settings: Settings, shard: int, shard_count: int,
                        versions: dict[str, int]) -> tuple[dict[str, int], list[asyncpg.Record]]:
    """For `catch_up`: the version of every area this shard owns now, and (id, version, geojson)
    of those newer than `versions` (what the shard holds)."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        boxes = await conn.fetch("SELECT cleaner_id::text AS id, min_lat, min_lng, max_lat, max_lng, version "
                                 "FROM service_areas")
        owned = {boxes[i][0]: boxes[i][5] for i in _owned(settings, boxes, shard, shard_count)}
        stale = [cid for cid, version in owned.items() if versions.get(cid, -1) < version]
        rows = await conn.fetch("SELECT cleaner_id::text, version, geojson::text FROM service_areas "
                                "WHERE cleaner_id = ANY($1::uuid[])", stale) if stale else []
    finally:
        await conn.close()
    return owned, rows


def _owned(settings: Settings, boxes: list[asyncpg.Record], shard: int, shard_count: int) -> list[int]:
    """Which of these (id, min_lat, min_lng, max_lat, max_lng, ...) rows touch a cell of `shard`."""
    if not boxes:
        return []
    box = np.array([(r[1], r[2], r[3], r[4]) for r in boxes], dtype=np.float64)
    owned = shards_of_box(box[:, 0], box[:, 1], box[:, 2], box[:, 3], cell_deg=settings.spatial_cell_deg,
                          shard_count=shard_count)[:, shard]
    return [int(i) for i in np.flatnonzero(owned)]


@ray.remote
class SpatialShard:
    """A synchronous actor, unlike the other shards: it never waits on I/O while it serves, and
    Ray runs a plain method for far less than an async one: 425 µs of the actor's CPU per empty
    call against 690 here, and 1,100 round trips a second against 880 (docs/decisions/0003).
    That alone took `bench.spatial`'s 64 clients from 15,979 searches a second to 20,354.

    Two threads (`max_concurrency=2`) and one lock around the state: every call holds the lock
    while it reads or changes the index, so they take turns as one thread would, but a
    catch-up reads PostgreSQL (in a short-lived event loop of its own) without it, so searches
    go on meanwhile, as they did on the async shard. A load holds it (there is nothing to
    search before), and a rebuild builds in a thread of its own, adopted by the next call."""

    def __init__(self, settings: Settings, shard: int, shard_count: int) -> None:
        shard_process_started()
        self.settings = settings
        self.shard = shard
        self.shard_count = shard_count
        self.areas: dict[str, tuple[int, tuple[str, Any, float, float]]] = {}  # id -> (version, entry)
        self.index = _build_index([])
        self.delta: dict[str, tuple[str, Any, float, float]] = {}
        self.delta_index: _Index | None = None  # a small tree over the delta, built on demand
        self.changed_during_build: set[str] | None = None
        self.rebuilding: threading.Thread | None = None
        self.built: _Index | None = None  # what the rebuild thread made, until a call adopts it
        self.loaded = False
        self.served = _Served()
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """The lock, held, with the shard ready: how every call reads or changes the state."""
        with self.lock:
            self._ready()
            yield

    def _ready(self) -> None:
        """Every call's first step, under the lock: load on the first call (and after Ray
        restarted the process; calls that arrive meanwhile wait for the lock), and adopt a
        finished rebuild."""
        if not self.loaded:
            self._load()
            self.loaded = True
        if self.rebuilding is not None and not self.rebuilding.is_alive():
            self._adopt()

    def _load(self) -> None:
        rows = asyncio.run(_read_owned(self.settings, self.shard, self.shard_count))
        geometries = shapely.from_geojson([r[1] for r in rows]) if rows else []
        entries = [_entry(r[0], g) for r, g in zip(rows, geometries, strict=True)]
        self.areas = {e[0]: (r[2], e) for r, e in zip(rows, entries, strict=True)}
        self.index = _build_index(entries)
        self.delta, self.delta_index = {}, None
        del rows, geometries
        _return_freed_memory()
        log.info("spatial shard %d/%d loaded %d areas", self.shard, self.shard_count, len(entries))

    # --- writes (called by the edge after the database transaction committed) ---

    def _tombstone(self, cleaner_id: str) -> None:
        pos = self.index.position.get(cleaner_id)
        if pos is not None:
            self.index.tombstoned[pos] = True
        if self.changed_during_build is not None:
            self.changed_during_build.add(cleaner_id)

    def apply(self, changes: list[tuple[str, int, str | None]]) -> int:
        """Apply (cleaner_id, version, geojson or None for deleted); older versions are ignored."""
        with self._held():
            return self._apply(changes)

    def _apply(self, changes: list[tuple[str, int, str | None]]) -> int:
        applied = 0
        new = [c for c in changes if c[0] not in self.areas or self.areas[c[0]][0] < c[1]]
        geometries = shapely.from_geojson([c[2] for c in new if c[2] is not None])
        it = iter(geometries)
        for cleaner_id, version, geojson in new:
            self._tombstone(cleaner_id)
            self.delta.pop(cleaner_id, None)
            self.delta_index = None
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
        if self.rebuilding is not None:
            return  # one at a time; the delta left after it triggers the next
        snapshot = [e for _, e in self.areas.values() if e[1] is not None]
        self.changed_during_build = set()
        self.rebuilding = threading.Thread(target=self._build, args=(snapshot,), name="spatial-rebuild", daemon=True)
        self.rebuilding.start()

    def _build(self, snapshot: list[tuple[str, Any, float, float]]) -> None:
        """The rebuild thread: builds from the snapshot and hands the index over in one
        assignment; it touches nothing else of the shard's (shapely releases the GIL while it
        builds, so calls are served meanwhile)."""
        try:
            self.built = _build_index(snapshot)
        except Exception:
            log.exception("spatial shard %d/%d: rebuilding the index failed; the old one serves on",
                          self.shard, self.shard_count)

    def _adopt(self) -> None:
        """Swap in what the finished rebuild made, in one step between calls: anything written
        while it built stays in the delta, tombstoned in the new tree."""
        index, self.built, self.rebuilding = self.built, None, None
        changed, self.changed_during_build = self.changed_during_build or set(), None
        if index is None:
            return  # the build failed (logged); the next write past the limit tries again
        for cleaner_id in changed:
            pos = index.position.get(cleaner_id)
            if pos is not None:
                index.tombstoned[pos] = True
        self.delta = {cid: self.areas[cid][1] for cid in changed
                      if cid in self.areas and self.areas[cid][1][1] is not None}
        self.index, self.delta_index = index, None

    # --- reads ---

    def find(self, points: bytes) -> bytes:
        """For n points as the bytes of an (n, 2) float64 array of (lat, lng), every area
        covering each point, ordered by point, packed by `pack_found`: how many areas cover each
        point, their cleaner ids and the distance in metres from the point to each area's
        representative point.

        One bulk STRtree query on bounding boxes for the whole batch, then one compiled pass for
        the candidates' verdicts (`_covering`; borders count as inside, as GEOS says), in the
        tree and in the delta. Plain bytes in and out: Ray passes bytes without
        pickling them (numpy arrays and Python objects are not spared that), and the ids go as
        the text the edge needs (64 points' answer is about 50 KB, which costs a Ray reply no
        more than 25 KB: `python -m bench.ray_call --sizes 0 25000 51000`)."""
        with self._held():
            started = time.thread_time()
            pairs = np.frombuffer(points, dtype=np.float64).reshape(-1, 2)
            batch = _Batch.of(np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1]))
            if self.delta and self.delta_index is None:
                self.delta_index = _build_index(list(self.delta.values()))
            parts = [_covering(index, batch)
                     for index in (self.index, self.delta_index if self.delta else None) if index is not None]
            which, ids, distance = (np.concatenate(column) for column in zip(*parts, strict=True))
            if len(parts) > 1 and len(which) > 1:
                order = np.argsort(which, kind="stable")
                which, ids, distance = which[order], ids[order], distance[order]
            self.served += (1, len(pairs), time.thread_time() - started)
        return pack_found(np.bincount(which, minlength=len(pairs)), ids, distance)

    def stats(self) -> dict[str, Any]:
        with self._held():
            return {"shard": self.shard, "areas": sum(1 for _, e in self.areas.values() if e[1] is not None),
                    "tree": len(self.index.ids), "delta": len(self.delta),
                    "tombstones": int(self.index.tombstoned.sum()),
                    "rebuilding": self.rebuilding is not None,
                    "find_calls": self.served.calls, "find_points": self.served.points,
                    "find_cpu_s": self.served.cpu_s}

    def rebuild_now(self) -> None:
        """Build a fresh tree and wait for it (tests, operators)."""
        with self._held():
            self._schedule_rebuild()
            building = self.rebuilding
        assert building is not None
        building.join()
        with self._held():
            pass  # adopts it, unless a call did already

    def catch_up(self) -> int:
        """Make this shard agree with PostgreSQL again: areas changed since it loaded, deleted,
        or moved out of its cells (a rebalance calls it, so a change committed while processes
        switched layouts is not missed). One query of bounding boxes and versions, one of the
        changed geometries; returns how many changes were applied."""
        with self._held():
            versions = {cid: version for cid, (version, _) in self.areas.items()}
        owned, rows = asyncio.run(_read_changed(self.settings, self.shard, self.shard_count, versions))
        with self.lock:
            changes: list[tuple[str, int, str | None]] = [(r[0], r[1], r[2]) for r in rows]
            # Gone from here: a deletion one version on, which any later real change outranks.
            changes += [(cid, version + 1, None) for cid, (version, entry) in self.areas.items()
                        if entry[1] is not None and cid not in owned]
            return self._apply(changes) if changes else 0

    def describe(self) -> dict[str, Any]:
        """What `spotless actors status` shows: areas held, and where this process runs."""
        with self._held():
            return {"entities": sum(1 for _, e in self.areas.values() if e[1] is not None), **process_facts()}

    def pid(self) -> int:
        return os.getpid()


def spatial_shard(settings: Settings, shard: int, *, count: int | None = None, prefix: str | None = None) -> Any:
    """The handle of one named spatial shard of `count` (the settings' count if not given),
    created on first use."""
    count = count or settings.spatial_shards
    name = shard_name(prefix or settings.spatial_shard_prefix, shard, count)
    return SpatialShard.options(**shard_options(settings, name, max_concurrency=2)).remote(  # type: ignore[attr-defined]
        settings, shard, count)
