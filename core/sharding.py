"""Which shard owns what: geographic cells for spatial shards, rendezvous hashing for cleaners.

Pure functions of the key and the shard count, so every edge worker and every shard agrees
without a lookup service. The cell functions accept floats or numpy arrays alike, because a shard
routes a whole batch of points (or a whole table of bounding boxes) in one vectorised call.

Cells are a fixed grid of `cell_deg` × `cell_deg` degrees (see docs/decisions/0003). A point's
cell is floor((coordinate + offset) / cell_deg), clamped at the +90/+180 edges; the function is
monotonic, so a point inside an area's bounding box always lands in one of the cells that box
covers, borders included. An area is indexed by every shard that owns a cell its box touches.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import Any

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, Knuth's multiplicative hash


@functools.cache
def grid_shape(cell_deg: float) -> tuple[int, int]:
    """(rows, columns) of the world grid."""
    return int(np.ceil(180.0 / cell_deg)), int(np.ceil(360.0 / cell_deg))


def cell_row(lat: Any, cell_deg: float) -> Any:
    rows, _ = grid_shape(cell_deg)
    return np.clip(np.floor((np.asarray(lat, dtype=np.float64) + 90.0) / cell_deg), 0, rows - 1).astype(np.int64)


def cell_col(lng: Any, cell_deg: float) -> Any:
    _, cols = grid_shape(cell_deg)
    return np.clip(np.floor((np.asarray(lng, dtype=np.float64) + 180.0) / cell_deg), 0, cols - 1).astype(np.int64)


def cell_of(lat: Any, lng: Any, cell_deg: float) -> Any:
    """The cell id of a point (or of arrays of points): row * columns + column."""
    _, cols = grid_shape(cell_deg)
    return cell_row(lat, cell_deg) * cols + cell_col(lng, cell_deg)


def shard_of_cell(cell: Any, shard_count: int) -> Any:
    """The spatial shard owning a cell: a multiplicative hash, so one city's neighbouring cells
    spread over the shards instead of landing on one."""
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    cells = np.asarray(cell, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping is the point of the hash
        mixed = (np.atleast_1d(cells) + np.uint64(1)) * _MIX
    shard = ((mixed >> np.uint64(32)) % np.uint64(shard_count)).astype(np.int64)
    return shard if cells.ndim else int(shard[0])


def shard_of_point(lat: Any, lng: Any, *, cell_deg: float, shard_count: int) -> Any:
    if isinstance(lat, float | int) and isinstance(lng, float | int):
        return shard_of_one_point(float(lat), float(lng), cell_deg, shard_count)
    return shard_of_cell(cell_of(lat, lng, cell_deg), shard_count)


def shard_of_one_point(lat: float, lng: float, cell_deg: float, shard_count: int) -> int:
    # The same IEEE arithmetic as the numpy path, without numpy's per-call cost on the hot path.
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    if shard_count == 1:
        return 0
    rows, cols = grid_shape(cell_deg)
    row = min(max(math.floor((lat + 90.0) / cell_deg), 0), rows - 1)
    col = min(max(math.floor((lng + 180.0) / cell_deg), 0), cols - 1)
    mixed = ((row * cols + col + 1) * int(_MIX)) & 0xFFFF_FFFF_FFFF_FFFF
    return (mixed >> 32) % shard_count


def shards_of_box(min_lat: Any, min_lng: Any, max_lat: Any, max_lng: Any, *, cell_deg: float,
                  shard_count: int) -> Any:
    """Boolean matrix [box, shard]: which shards own at least one cell each box touches."""
    _, cols = grid_shape(cell_deg)
    r0, r1 = cell_row(min_lat, cell_deg), cell_row(max_lat, cell_deg)
    c0, c1 = cell_col(min_lng, cell_deg), cell_col(max_lng, cell_deg)
    r0, r1, c0, c1 = (np.atleast_1d(a) for a in (r0, r1, c0, c1))
    owned = np.zeros((len(r0), shard_count), dtype=bool)
    rows = np.arange(len(r0))
    # Service areas span a few cells, so loop over the offsets, vectorised over every box.
    for dr in range(int((r1 - r0).max(initial=0)) + 1):
        for dc in range(int((c1 - c0).max(initial=0)) + 1):
            valid = (r0 + dr <= r1) & (c0 + dc <= c1)
            if not valid.any():
                continue
            shard = shard_of_cell((r0 + dr) * cols + (c0 + dc), shard_count)
            owned[rows[valid], shard[valid]] = True
    return owned


def shard_of_cleaner(cleaner_id: str, shard_count: int) -> int:
    """Rendezvous (highest random weight) hashing: when the count changes, only the cleaners of
    the added or removed shard move."""
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    key = str(cleaner_id).encode()
    best, best_weight = 0, b""
    for shard in range(shard_count):
        weight = hashlib.blake2b(key + b"/" + str(shard).encode(), digest_size=8).digest()
        if weight > best_weight:
            best, best_weight = shard, weight
    return best
