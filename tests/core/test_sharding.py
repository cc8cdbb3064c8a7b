"""Routing: cells, cells to shards, boxes to shards, cleaners to shards."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from core.sharding import (
    cell_of,
    grid_shape,
    shard_of_cell,
    shard_of_cleaner,
    shard_of_point,
    shards_of_box,
)


def test_cells_cover_the_world_including_its_edges() -> None:
    rows, cols = grid_shape(0.5)
    assert (rows, cols) == (360, 720)
    assert cell_of(-90, -180, 0.5) == 0
    assert cell_of(90, 180, 0.5) == rows * cols - 1
    assert cell_of(0.0, 0.0, 0.5) == 180 * cols + 360
    assert cell_of(-0.0000001, -0.0000001, 0.5) == 179 * cols + 359


def test_scalars_and_arrays_route_alike() -> None:
    lats, lngs = np.array([51.5, -33.9, 0.25]), np.array([-0.1, 151.2, 179.99])
    batch = shard_of_point(lats, lngs, cell_deg=0.5, shard_count=7)
    assert list(batch) == [shard_of_point(a, b, cell_deg=0.5, shard_count=7) for a, b in zip(lats, lngs, strict=True)]
    assert all(isinstance(shard_of_cell(c, 7), int) for c in range(10))
    rng = random.Random(3)
    many = [(rng.uniform(-90, 90), rng.uniform(-180, 180)) for _ in range(5000)]
    many += [(lat, lng) for lat in (-90.0, -0.5, 0.0, 51.5, 90.0) for lng in (-180.0, -0.5, 0.0, 179.5, 180.0)]
    array = shard_of_point(np.array([p[0] for p in many]), np.array([p[1] for p in many]), cell_deg=0.5,
                           shard_count=13)
    assert array.tolist() == [shard_of_point(a, b, cell_deg=0.5, shard_count=13) for a, b in many]


def test_neighbouring_cells_spread_over_shards() -> None:
    counts = Counter(shard_of_cell(np.arange(180 * 720, 180 * 720 + 4000), 8).tolist())
    assert set(counts) == set(range(8))
    assert max(counts.values()) < 1.2 * 4000 / 8


def test_every_point_of_a_box_routes_to_a_shard_that_indexes_the_box() -> None:
    rng = random.Random(5)
    for _ in range(500):
        lat0, lng0 = rng.uniform(-80, 80), rng.uniform(-179, 178)
        lat1, lng1 = lat0 + rng.uniform(0, 1.2), lng0 + rng.uniform(0, 1.2)
        owned = shards_of_box(lat0, lng0, lat1, lng1, cell_deg=0.5, shard_count=5)[0]
        # corners, edges and random interior points, borders exactly on cell lines included
        points = [(lat0, lng0), (lat1, lng1), (lat0, lng1), (lat1, lng0)]
        points += [(rng.uniform(lat0, lat1), rng.uniform(lng0, lng1)) for _ in range(10)]
        for lat, lng in points:
            assert owned[shard_of_point(lat, lng, cell_deg=0.5, shard_count=5)]


def test_a_box_on_cell_lines_is_owned_by_the_shards_on_both_sides() -> None:
    owned = shards_of_box(51.0, -0.5, 51.5, 0.0, cell_deg=0.5, shard_count=64)[0]
    cells = [cell_of(lat, lng, 0.5) for lat in (51.0, 51.5) for lng in (-0.5, 0.0)]
    assert all(owned[shard_of_cell(c, 64)] for c in cells)


def test_shard_count_must_be_positive() -> None:
    with pytest.raises(ValueError):
        shard_of_cell(1, 0)
    with pytest.raises(ValueError):
        shard_of_cleaner("x", 0)


def test_rendezvous_hashing_is_stable_balanced_and_moves_little() -> None:
    ids = [f"cleaner-{i}" for i in range(4000)]
    before = [shard_of_cleaner(c, 4) for c in ids]
    assert before == [shard_of_cleaner(c, 4) for c in ids]
    counts = Counter(before)
    assert min(counts.values()) > 800
    after = [shard_of_cleaner(c, 5) for c in ids]
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    # only cleaners that now belong to the new shard move, about a fifth of them
    assert all(b == 4 for _, b in moved)
    assert 600 < len(moved) < 1000
