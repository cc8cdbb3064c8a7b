"""Spatial shards answer "who serves this point" exactly as a brute-force shapely scan does."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

import numpy as np
import pytest
import ray
import shapely
from tortoise import connections

from actors.clients import SpatialClient
from actors.spatial import NEAR, _build_index
from actors.spatial_kernels import decide
from core.settings import Settings
from storage.service_areas import remove_service_area, set_service_area
from tests.actors.conftest import cleaner_with_area

pytestmark = pytest.mark.usefixtures("db")


def circle(lat: float, lng: float, radius_deg: float, *, vertices: int = 24) -> list[list[float]]:
    ring = [[round(lng + radius_deg * np.cos(a) * 1.6, 6), round(lat + radius_deg * np.sin(a), 6)]
            for a in np.linspace(0, 2 * np.pi, vertices, endpoint=False)]
    return ring + [ring[0]]


def box(lat0: float, lng0: float, lat1: float, lng1: float) -> list[list[float]]:
    return [[lng0, lat0], [lng1, lat0], [lng1, lat1], [lng0, lat1], [lng0, lat0]]


def random_area(rng: random.Random) -> dict[str, Any]:
    # Around 51°N 0°E, where 0.5° cell lines cross: many areas span several cells.
    lat, lng = rng.uniform(50.6, 51.9), rng.uniform(-0.9, 0.9)
    kind = rng.random()
    if kind < 0.55:
        return {"type": "Polygon", "coordinates": [circle(lat, lng, rng.uniform(0.02, 0.12))]}
    if kind < 0.75:
        # a polygon with a hole, and a second part
        r = rng.uniform(0.06, 0.12)
        return {"type": "MultiPolygon", "coordinates": [
            [circle(lat, lng, r), circle(lat, lng, r / 3, vertices=8)[::-1]],
            [circle(lat + 2.5 * r, lng, r / 2, vertices=12)],
        ]}
    # boxes whose sides lie on cell lines, so points exactly on borders are common
    lat0 = rng.choice([50.5, 51.0, 51.5]) + rng.choice([0, 0.25])
    lng0 = rng.choice([-1.0, -0.5, 0.0, 0.5]) + rng.choice([0, 0.25])
    return {"type": "Polygon", "coordinates": [box(lat0, lng0, lat0 + 0.25, lng0 + 0.25)]}


ANTIMERIDIAN = {"type": "MultiPolygon", "coordinates": [
    [box(-17.9, 179.7, -17.6, 180.0)], [box(-17.9, -180.0, -17.6, -179.8)]]}


def probe_points(rng: random.Random, geometries: list[Any]) -> list[tuple[float, float]]:
    points = [(rng.uniform(50.4, 52.3), rng.uniform(-1.1, 1.1)) for _ in range(2500)]
    # exactly on borders: vertices and edge midpoints of areas, cell lines and their crossings
    for geometry in rng.sample(geometries, min(120, len(geometries))):
        coords = shapely.get_coordinates(shapely.get_exterior_ring(shapely.get_geometry(geometry, 0)))
        for x, y in coords[:3]:
            points.append((float(y), float(x)))
        (x0, y0), (x1, y1) = coords[0], coords[1]
        points.append((float((y0 + y1) / 2), float((x0 + x1) / 2)))
    points += [(lat, lng) for lat in (50.5, 51.0, 51.5, 51.75) for lng in (-1.0, -0.5, -0.25, 0.0, 0.5, 0.75)]
    points += [(rng.uniform(50.5, 52), lng) for lng in (-0.5, 0.0, 0.5) for _ in range(30)]
    # around and on the antimeridian
    points += [(-17.75, 179.9), (-17.75, -179.9), (-17.75, 180.0), (-17.75, -180.0), (-17.6, 180.0),
               (-17.95, 179.9), (-17.75, 179.5), (-17.75, -179.7)]
    return points


async def brute_force(points: list[tuple[float, float]]) -> list[set[str]]:
    rows = await connections.get("default").execute_query_dict(
        "SELECT cleaner_id::text AS id, geojson::text AS geojson FROM service_areas")
    ids = [r["id"] for r in rows]
    geoms = shapely.from_geojson([r["geojson"] for r in rows])
    pts = shapely.points([p[1] for p in points], [p[0] for p in points])
    hits = shapely.intersects(geoms[:, None], pts[None, :])
    return [{ids[g] for g in np.flatnonzero(hits[:, i])} for i in range(len(points))]


async def find_all(client: SpatialClient, points: list[tuple[float, float]]) -> list[set[str]]:
    found = await asyncio.gather(*(client.find(lat, lng) for lat, lng in points))
    return [{cid for cid, _ in hits} for hits in found]


def shard_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"spatial_shards": 3, "spatial_rebuild_delta": 16, **changes})


@pytest.fixture(scope="module")
def rng() -> random.Random:
    return random.Random(20261125)


async def test_search_matches_brute_force_on_a_random_data_set(settings: Settings, shard_prefix: str,
                                                               rng: random.Random) -> None:
    # given hundreds of areas (holes, multi-part, on cell lines, split at the antimeridian)
    made = [await cleaner_with_area(settings, random_area(rng)) for _ in range(240)]
    made.append(await cleaner_with_area(settings, ANTIMERIDIAN))
    geometries = [shapely.from_geojson(__import__("json").dumps(random_area(rng))) for _ in range(150)]
    points = probe_points(rng, geometries + [shapely.from_geojson(c.geojson) for _, c in made[:150]])
    client = SpatialClient(shard_settings(settings), prefix=shard_prefix)

    # when thousands of points are asked concurrently
    found = await find_all(client, points)

    # then every point gets exactly the areas that cover it, in far fewer Ray calls than points
    expected = await brute_force(points)
    assert found == expected
    assert sum(len(s) for s in expected) > 2000
    assert sum(1 for lat, lng in points if abs(lng) == 180 and expected[points.index((lat, lng))]) >= 2
    assert client.coalescer.batches < len(points) / 20

    # and after many updates (forcing background rebuilds) and deletions it still agrees
    for user, _ in made[:80]:
        _, change = await set_service_area(actor=user, geojson=random_area(rng), settings=settings)
        await client.apply(change)
    for user, _ in made[80:110]:
        await client.apply(await remove_service_area(actor=user))
    assert await find_all(client, points) == await brute_force(points)
    stats = await asyncio.gather(*(s.stats.remote() for s in client.shards))
    assert sum(s["tree"] for s in stats) > 0

    # and once a rebuild has been adopted, nothing is left in the delta and it still agrees
    await asyncio.gather(*(s.rebuild_now.remote() for s in client.shards))
    stats = await asyncio.gather(*(s.stats.remote() for s in client.shards))
    assert [(s["delta"], s["tombstones"], s["rebuilding"]) for s in stats] == [(0, 0, False)] * len(stats)
    assert sum(s["tree"] for s in stats) == sum(s["areas"] for s in stats)
    assert await find_all(client, points) == await brute_force(points)


async def test_a_change_is_visible_at_once(settings: Settings, shard_prefix: str) -> None:
    # given a shard set that has loaded, and a cleaner who serves a square near Leeds
    client = SpatialClient(shard_settings(settings, spatial_rebuild_delta=10_000), prefix=shard_prefix)
    assert await client.find(53.8, -1.55) is not None
    user, change = await cleaner_with_area(settings, {"type": "Polygon", "coordinates": [box(53.7, -1.7, 53.9, -1.4)]})
    cid = str(user.id)
    assert cid not in {c for c, _ in await client.find(53.8, -1.55)}

    # when the committed change reaches the shards, then the very next query sees it
    await client.apply(change)
    hits = dict(await client.find(53.8, -1.55))
    assert cid in hits and hits[cid] < 20_000

    # when the cleaner moves the area to York, then Leeds no longer finds them, York does
    _, moved = await set_service_area(actor=user, geojson={"type": "Polygon", "coordinates": [box(53.9, -1.2, 54.0, -1.0)]},
                                      settings=settings)
    await client.apply(moved)
    assert cid not in dict(await client.find(53.8, -1.55))
    assert cid in dict(await client.find(53.95, -1.1))

    # when an older change arrives late, it is ignored
    await client.apply(change)
    assert cid in dict(await client.find(53.95, -1.1))

    # when the area is removed, then nobody finds it
    await client.apply(await remove_service_area(actor=user))
    assert cid not in dict(await client.find(53.95, -1.1))


async def test_a_killed_shard_reloads_from_postgres(settings: Settings, shard_prefix: str) -> None:
    # given areas in PostgreSQL and a shard set that answers for them
    user, _ = await cleaner_with_area(settings, {"type": "Polygon", "coordinates": [box(55.9, -3.3, 56.0, -3.1)]})
    client = SpatialClient(shard_settings(settings), prefix=shard_prefix)
    shard = client.shards[client.shard_of(55.95, -3.2)]
    assert str(user.id) in dict(await client.find(55.95, -3.2))
    old_pid = await shard.pid.remote()

    # when its process dies (as on a node failure), and when Ray kills it for restart
    os.kill(old_pid, signal.SIGKILL)
    hits = dict(await client.find(55.95, -3.2))
    new_pid = await shard.pid.remote()
    assert new_pid != old_pid
    ray.kill(shard, no_restart=False)
    deadline = time.monotonic() + 60
    third_pid = new_pid
    while third_pid == new_pid:  # ray.kill returns before the process is gone
        assert time.monotonic() < deadline
        try:
            third_pid = await shard.pid.remote()
        except ray.exceptions.RayActorError:
            pass
        await asyncio.sleep(0.1)

    # then each new process loaded the areas again and answers correctly
    assert str(user.id) in hits
    assert third_pid not in (old_pid, new_pid)
    points = [(55.95, -3.2), (55.9, -3.3), (56.0, -3.1), (55.85, -3.2)]
    assert await find_all(client, points) == await brute_force(points)


def test_the_shards_own_verdicts_never_contradict_geos() -> None:
    # given areas whose centroid is outside them, with holes, in several parts, thin, a sliver,
    # boxes, and areas that are wholly concave around their centre
    rng = random.Random(7)
    shapes = [
        {"type": "Polygon", "coordinates": [[[0, 0], [3, 0], [3, 1], [1, 1], [1, 2], [3, 2], [3, 3], [0, 3], [0, 0]]]},
        {"type": "Polygon", "coordinates": [circle(10, 10, 1.0), circle(10, 10, 0.6)[::-1]]},
        {"type": "MultiPolygon", "coordinates": [[box(20, 20, 21, 21)], [box(20, 25, 20.2, 25.2)]]},
        {"type": "Polygon", "coordinates": [[[30, 30], [34, 30.001], [30, 30.002], [30, 30]]]},
        {"type": "Polygon", "coordinates": [[[35, 35], [36, 35 + 1e-9], [35, 35 + 2e-9], [35, 35]]]},
        {"type": "Polygon", "coordinates": [[[50, 50], [52, 50], [52, 52], [51, 50.2], [50, 52], [50, 50]]]},
        *({"type": "Polygon", "coordinates": [box(40 + i, 40, 40.5 + i, 40.25)]} for i in range(3)),
        *(random_area(rng) for _ in range(40)),
    ]
    geometries = [shapely.from_geojson(__import__("json").dumps(s)) for s in shapes]
    index = _build_index([(f"00000000-0000-4000-8000-{i:012x}", g, 0.0, 0.0) for i, g in enumerate(geometries)])
    index.tombstoned[len(geometries) - 1] = True
    counted = np.zeros(3, dtype=int)
    thin_areas = 0
    for pos, geometry in enumerate(geometries):
        # when points are thrown at and around each, vertices and edge midpoints included
        x0, y0, x1, y1 = shapely.bounds(geometry)
        corners = shapely.get_coordinates(geometry)
        rings = [shapely.get_coordinates(r) for r in shapely.get_rings(shapely.get_parts(geometry))]
        middles = np.concatenate([(r[1:] + r[:-1]) / 2 for r in rings])
        xs = np.r_[np.random.default_rng(1).uniform(x0 - 0.1, x1 + 0.1, 4000), corners[:, 0], middles[:, 0]]
        ys = np.r_[np.random.default_rng(2).uniform(y0 - 0.1, y1 + 0.1, 4000), corners[:, 1], middles[:, 1]]
        exact = shapely.intersects_xy(geometry, xs, ys)
        verdict = decide(np.full(len(xs), pos), xs, ys, index.tombstoned, index.frame, index.bounds,
                          index.vertex_start, index.vertices)
        if index.tombstoned[pos]:
            # then a tombstoned area covers nothing
            assert not verdict.any()
            continue
        # then what they call inside is inside, what they call outside is outside
        assert exact[verdict == 1].all()
        assert not exact[verdict == 0].any()
        # and only points on or next to a border are left to GEOS: all of those, and of the rest
        # only ones within NEAR of the radius of it; an area too thin for the sectors to judge
        # is left to GEOS whole
        assert (verdict[4000:] == 2).all()
        thin = not np.isfinite(index.frame[pos, 2])
        if thin:
            assert (verdict[:4000] == 2).all()
            thin_areas += 1
        else:
            radius = np.sqrt(255 * index.frame[pos, 2])
            left = np.flatnonzero(verdict[:4000] == 2)
            assert len(left) <= 3
            assert (shapely.distance(shapely.boundary(geometry), shapely.points(xs[left], ys[left]))
                    <= NEAR * radius * 1.001).all()
        counted += np.bincount(verdict[:4000], minlength=3)
    assert counted[0] > 0 and counted[1] > 0
    assert thin_areas == 1  # the sliver
