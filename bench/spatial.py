"""Benchmark: "who serves this point" through the spatial shards vs PostGIS, in the same run.

Builds N service areas (5-15 km across, 16-24 corners) over a region scaled so that a random
point in it is covered by about `--coverage` areas, writes them to a fresh database (the real
`service_areas` table, from which the shards load exactly as in production, and a PostGIS table
with a GiST index), then drives both with 1, 16 and 64 concurrent clients and prints queries/s,
p50, p99, the ratio, and the index memory per million areas. Not a test; PostGIS is only needed
here (apt-get install postgresql-15-postgis-3), never by the product.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.spatial \
        --areas 100000 --areas 1000000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import multiprocessing
import os
import secrets
import statistics
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import psutil
import ray
import shapely
import uvloop

from actors.clients import SpatialClient
from actors.runtime import start_local_ray
from core import collector
from core.settings import Settings
from storage.db import asyncpg_dsn
from storage.migrate import migrate

KM_PER_DEG_LAT = 111.195
# asyncpg prepares this once per connection and reuses the plan (its statement cache).
POSTGIS_SQL = "SELECT cleaner_id FROM bench_postgis WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint($1, $2), 4326))"


def make_areas(n: int, *, coverage: float, seed: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """n jittered-circle polygons 5-15 km across, and the region (lat0, lng0, lat1, lng1) they span."""
    rng = np.random.default_rng(seed)
    mean_area_km2 = math.pi * 5.0**2 * 1.08  # E[r²] for r uniform in [2.5, 7.5] km is 27.1
    side_km = math.sqrt(n * mean_area_km2 / coverage)
    lat0 = 40.0
    lat1 = lat0 + side_km / KM_PER_DEG_LAT
    mid = math.radians((lat0 + lat1) / 2)
    lng0 = -5.0
    lng1 = lng0 + side_km / (KM_PER_DEG_LAT * math.cos(mid))
    lat = rng.uniform(lat0, lat1, n)
    lng = rng.uniform(lng0, lng1, n)
    radius_km = rng.uniform(2.5, 7.5, n)
    polygons = np.empty(n, dtype=object)
    corner_counts = rng.choice([16, 20, 24], n)
    for corners in (16, 20, 24):
        chosen = np.flatnonzero(corner_counts == corners)
        angle = np.linspace(0, 2 * np.pi, corners, endpoint=False)[None, :]
        jitter = rng.uniform(0.8, 1.0, (len(chosen), corners))
        r = radius_km[chosen, None] * jitter
        ys = lat[chosen, None] + r * np.sin(angle) / KM_PER_DEG_LAT
        xs = lng[chosen, None] + r * np.cos(angle) / (KM_PER_DEG_LAT * np.cos(np.radians(lat[chosen, None])))
        coords = np.stack([xs, ys], axis=-1)
        coords = np.concatenate([coords, coords[:, :1]], axis=1).round(6)
        polygons[chosen] = shapely.polygons(coords)
    return polygons, (lat0, lng0, lat1, lng1)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(asyncpg_dsn(url))
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


async def build_database(server_url: str, polygons: np.ndarray) -> str:
    name = f"spotless_bench_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = with_database(server_url, name)
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        await conn.execute("""CREATE UNLOGGED TABLE bench_input (id uuid, geojson text, min_lng float8,
                              min_lat float8, max_lng float8, max_lat float8, wkb bytea)""")
        ids = [f"00000000-0000-4000-8000-{i:012x}" for i in range(len(polygons))]
        bounds = shapely.bounds(polygons)
        step = 100_000
        for a in range(0, len(polygons), step):
            chunk = polygons[a:a + step]
            records = zip(ids[a:a + step], shapely.to_geojson(chunk).tolist(), *bounds[a:a + step].T.tolist(),
                          shapely.to_wkb(chunk).tolist(), strict=True)
            await conn.copy_records_to_table("bench_input", records=records)
        await conn.execute("""INSERT INTO users (id, email, name, role)
                              SELECT id, id::text || '@bench.invalid', 'Bench Cleaner', 'cleaner' FROM bench_input""")
        await conn.execute("INSERT INTO cleaner_profiles (user_id, verification_status) "
                           "SELECT id, 'approved' FROM bench_input")
        await conn.execute("""INSERT INTO service_areas (cleaner_id, geojson, min_lng, min_lat, max_lng, max_lat, area_km2)
                              SELECT id, geojson::jsonb, min_lng, min_lat, max_lng, max_lat, 0 FROM bench_input""")
        await conn.execute("""CREATE TABLE bench_postgis AS
                              SELECT id AS cleaner_id, ST_SetSRID(ST_GeomFromWKB(wkb), 4326) AS geom FROM bench_input""")
        await conn.execute("CREATE INDEX bench_postgis_geom ON bench_postgis USING gist (geom)")
        await conn.execute("DROP TABLE bench_input")
        await conn.execute("VACUUM ANALYZE bench_postgis")
        await conn.execute("VACUUM ANALYZE service_areas")
    finally:
        await conn.close()
    return url


async def drop_database(server_url: str, url: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
    await admin.close()


async def closed_loop(query: Any, pairs: list[Any], *, concurrency: int, seconds: float) -> tuple[list[float], float]:
    """`concurrency` clients asking `query` back to back for `seconds`: each latency, and the window."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    shared = itertools.cycle(pairs)  # one sequence for all clients, as before: no two ask alike at once

    async def client() -> None:
        # Lean, for both sides alike: at 20,000 queries a second the loop's own microseconds count.
        started = time.perf_counter()
        while started < deadline:
            lat, lng = next(shared)
            await query(lat, lng)
            done = time.perf_counter()
            latencies.append(done - started)
            started = done

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def summary(latencies: list[float], qps: float, cpu_s: float) -> dict[str, float]:
    """Throughput, p50/p99 and the CPU time per query (a figure the machine's other load moves
    far less than q/s)."""
    latencies.sort()
    return {"qps": qps, "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)], "n": len(latencies),
            "cpu_us": 1e6 * cpu_s / len(latencies)}


async def drive(query: Any, points: np.ndarray, *, concurrency: int, seconds: float,
                processes: list[psutil.Process]) -> dict[str, float]:
    """Closed-loop clients in this process; CPU counted over `processes`."""
    cpu_before = _cpu_s(processes)
    latencies, elapsed = await closed_loop(query, points.tolist(), concurrency=concurrency, seconds=seconds)
    return summary(latencies, len(latencies) / elapsed, _cpu_s(processes) - cpu_before)


class Drivers:
    """`--drivers K`: the clients of each row split over K processes, as K edge workers would
    carry them, for both sides alike (one event loop caps either side near one core). Each
    process joins the same Ray cluster and shards, and opens its own share of the PostGIS pool."""

    def __init__(self, count: int, *, settings: Settings, prefix: str, url: str, pg_pool: int,
                 points: np.ndarray) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes = []
        self.processes = []
        for _ in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=_driver_process, daemon=True, args=(
                theirs, ray.get_runtime_context().gcs_address, ray.get_runtime_context().namespace,
                settings.model_dump(), prefix, url, max(1, pg_pool // count), points))
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)
        for pipe in self.pipes:
            assert pipe.recv() == "ready"
        self.ps = [psutil.Process(p.pid) for p in self.processes]

    def run(self, side: str, *, concurrency: int, seconds: float,
            processes: list[psutil.Process]) -> dict[str, float]:
        share = [concurrency // len(self.pipes) + (i < concurrency % len(self.pipes)) for i in range(len(self.pipes))]
        cpu_before = _cpu_s([*self.ps, *processes])
        busy = [(pipe, n) for pipe, n in zip(self.pipes, share, strict=True) if n]
        for pipe, n in busy:
            pipe.send((side, n, seconds))
        latencies: list[float] = []
        qps = 0.0
        for pipe, _ in busy:
            got, elapsed = pipe.recv()
            latencies += got
            qps += len(got) / elapsed
        return summary(latencies, qps, _cpu_s([*self.ps, *processes]) - cpu_before)

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def _driver_process(pipe: Any, ray_address: str, namespace: str, settings: dict[str, Any], prefix: str,
                    url: str, pg_pool: int, points: np.ndarray) -> None:
    ray.init(address=ray_address, namespace=namespace, log_to_driver=False, logging_level=logging.WARNING)
    collector.tune()  # as the edge worker it stands for
    uvloop.run(_drive_on_request(pipe, Settings(**settings), prefix, url, pg_pool, points.tolist()))


async def _drive_on_request(pipe: Any, settings: Settings, prefix: str, url: str, pg_pool: int,
                            pairs: list[Any]) -> None:
    client = SpatialClient(settings, prefix=prefix)
    pool = await asyncpg.create_pool(url, min_size=pg_pool, max_size=pg_pool)

    async def postgis(lat: float, lng: float) -> list[Any]:
        async with pool.acquire() as conn:
            return await conn.fetch(POSTGIS_SQL, lng, lat)

    pipe.send("ready")
    while (order := await asyncio.to_thread(pipe.recv)) is not None:
        side, concurrency, seconds = order
        query = client.find if side == "actors" else postgis
        await closed_loop(query, pairs, concurrency=concurrency, seconds=min(1.0, seconds))  # warm up
        pipe.send(await closed_loop(query, pairs, concurrency=concurrency, seconds=seconds))
    await pool.close()


async def _find_calls(client: SpatialClient) -> int:
    """Ray calls the shards' `find` has taken (from every driver process)."""
    return sum(s["find_calls"] for s in await asyncio.gather(*(s.stats.remote() for s in client.shards)))


async def _find_cpu_s(client: SpatialClient) -> float:
    """CPU seconds the shards have spent inside `find` (the rest of their CPU is Ray's per call)."""
    return sum(s["find_cpu_s"] for s in await asyncio.gather(*(s.stats.remote() for s in client.shards)))


def _cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


async def bench(n: int, args: argparse.Namespace, base: Settings) -> None:
    print(f"\n=== {n:,} service areas ===", flush=True)
    t0 = time.perf_counter()
    polygons, (lat0, lng0, lat1, lng1) = make_areas(n, coverage=args.coverage, seed=n)
    print(f"generated in {time.perf_counter() - t0:.1f}s; region {lat1 - lat0:.2f}° x {lng1 - lng0:.2f}°")
    t0 = time.perf_counter()
    url = await build_database(args.server_url, polygons)
    del polygons
    print(f"written to PostgreSQL (service_areas + PostGIS table and GiST index) in {time.perf_counter() - t0:.1f}s")
    settings = base.model_copy(update={"database_url": url, "spatial_shards": args.shards,
                                       "shard_client_max_inflight": args.inflight})
    client = SpatialClient(settings, prefix=f"bench-{secrets.token_hex(3)}")
    pool = None
    drivers: Drivers | None = None
    try:
        pids = await asyncio.gather(*(s.pid.remote() for s in client.shards))
        shard_processes = [psutil.Process(p) for p in pids]
        rss_before = sum(p.memory_info().rss for p in shard_processes)
        t0 = time.perf_counter()
        stats = await asyncio.gather(*(s.stats.remote() for s in client.shards))
        load_s = time.perf_counter() - t0
        rss_after = sum(p.memory_info().rss for p in shard_processes)
        held = sum(s["areas"] for s in stats)
        print(f"{args.shards} shards loaded {held:,} area copies ({held / n:.2f} per area, cell-line "
              f"crossings) from PostgreSQL in {load_s:.1f}s")
        trips = []
        for _ in range(200):
            t = time.perf_counter()
            await client.shards[0].pid.remote()
            trips.append(time.perf_counter() - t)
        print(f"Ray round trip (empty call) p50 {1000 * statistics.median(trips):.2f} ms; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        rng = np.random.default_rng(7)
        points = np.column_stack([rng.uniform(lat0, lat1, 20_000), rng.uniform(lng0, lng1, 20_000)])

        pool = await asyncpg.create_pool(url, min_size=args.pg_pool, max_size=args.pg_pool)

        async def postgis(lat: float, lng: float) -> list[Any]:
            async with pool.acquire() as conn:  # type: ignore[union-attr]
                return await conn.fetch(POSTGIS_SQL, lng, lat)

        # the two answer the same
        sample = points[:300]
        actor_sets = [{c for c, _ in await client.find(float(a), float(b))} for a, b in sample]
        pg_sets = [{str(r[0]) for r in await postgis(float(a), float(b))} for a, b in sample]
        mismatches = sum(1 for x, y in zip(actor_sets, pg_sets, strict=True) if x != y)
        covering = statistics.mean(len(s) for s in pg_sets)
        print(f"agreement on 300 points: {300 - mismatches}/300; mean areas per point {covering:.1f}")

        if args.drivers > 1:
            drivers = await asyncio.to_thread(Drivers, args.drivers, settings=settings, prefix=client.prefix,
                                              url=url, pg_pool=args.pg_pool, points=points)
        async with pool.acquire() as conn:
            pg_mem = await conn.fetchval("SELECT pg_total_relation_size('bench_postgis')")
            pg_index = await conn.fetchval("SELECT pg_relation_size('bench_postgis_geom')")
            backends = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        per_m = 1_000_000 / n
        print(f"memory per 1M areas: shards {(rss_after - rss_before) * per_m / 2**20:,.0f} MiB RSS "
              f"(index + geometries); PostGIS table+index {pg_mem * per_m / 2**20:,.0f} MiB on disk, "
              f"GiST alone {pg_index * per_m / 2**20:,.0f} MiB")
        driver = psutil.Process()
        actor_side = [driver, *shard_processes]
        postgis_side = [driver, *(psutil.Process(r["pid"]) for r in backends)]
        where = (f"{args.drivers} driver processes" if drivers else "one driver process")
        print(f"clients spread over {where}, each with its own coalescing SpatialClient and asyncpg pool")

        print(f"PostGIS through an asyncpg pool of {args.pg_pool} connections; cpu = CPU time per query of "
              "the driver plus the shard processes (actors) or the PostgreSQL backends (PostGIS)")
        for run in range(args.repeat):
            if args.repeat > 1:
                print(f"-- run {run + 1} of {args.repeat}")
            print(f"{'clients':>7} | {'actors q/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'cpu µs':>6} | "
                  f"{'PostGIS q/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'cpu µs':>6} | {'ratio':>5} | load")
            for concurrency in args.clients:
                calls_before, find_before = await _find_calls(client), await _find_cpu_s(client)
                load = os.getloadavg()[0]
                if drivers:
                    a = await asyncio.to_thread(drivers.run, "actors", concurrency=concurrency,
                                                seconds=args.seconds, processes=actor_side)
                else:
                    await drive(client.find, points, concurrency=concurrency, seconds=1, processes=[])  # warm up
                    calls_before, find_before = await _find_calls(client), await _find_cpu_s(client)
                    a = await drive(client.find, points, concurrency=concurrency, seconds=args.seconds,
                                    processes=actor_side)
                batch = a["n"] / max(1, await _find_calls(client) - calls_before)
                find_us = 1e6 * (await _find_cpu_s(client) - find_before) / a["n"]
                if drivers:
                    p = await asyncio.to_thread(drivers.run, "postgis", concurrency=concurrency,
                                                seconds=args.seconds, processes=postgis_side)
                else:
                    await drive(postgis, points, concurrency=concurrency, seconds=1, processes=[])
                    p = await drive(postgis, points, concurrency=concurrency, seconds=args.seconds,
                                    processes=postgis_side)
                load = (load + os.getloadavg()[0]) / 2
                print(f"{concurrency:>7} | {a['qps']:>10,.0f} {a['p50_ms']:>7.2f} {a['p99_ms']:>7.2f} "
                      f"{a['cpu_us']:>6.0f} | {p['qps']:>11,.0f} {p['p50_ms']:>7.2f} {p['p99_ms']:>7.2f} "
                      f"{p['cpu_us']:>6.0f} | {a['qps'] / p['qps']:>5.1f} | {load:.1f}"
                      f"  (~{batch:.0f} points per Ray call, {find_us:.0f} µs of cpu in the shards' find)",
                      flush=True)
    finally:
        if drivers is not None:
            drivers.close()
        for shard in client.shards:
            ray.kill(shard)
        if pool is not None:
            await pool.close()
        await drop_database(args.server_url, url)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--areas", type=int, action="append", help="repeatable; default 100000")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--inflight", type=int, default=Settings().shard_client_max_inflight,
                        help="Ray calls in flight per shard from the one driver (the edge's setting)")
    parser.add_argument("--coverage", type=float, default=25.0, help="mean areas covering a point")
    parser.add_argument("--pg-pool", type=int, default=16,
                        help="PostgreSQL connections in the PostGIS pool (the server's max_connections is shared)")
    parser.add_argument("--drivers", type=int, default=1,
                        help="processes the clients are spread over (both sides alike), like edge workers")
    parser.add_argument("--repeat", type=int, default=1, help="measure the whole table this many times")
    args = parser.parse_args()
    args.server_url = os.environ.get("DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    start_local_ray(f"spotless-bench-{secrets.token_hex(3)}")
    base = Settings()
    try:
        for n in args.areas or [100_000]:
            await bench(n, args, base)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    uvloop.run(main())  # the loop the edge runs on (Sanic uses uvloop); asyncpg gets it too
