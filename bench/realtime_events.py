"""What a cache channel costs: Pusher HTTP API triggers and socket subscriptions on cache
channels against plain channels, alternating, in one run against one edge.

A trigger on a `cache-` channel first stores the event in JetStream (a publish that waits for
the server's acknowledgement) and then fans it out as any trigger does; a subscription to one
reads the stored event back (a direct get) before answering. This measures both against the plain
channel: closed-loop triggers signed by Pusher's own Python SDK (its request class, sent with
aiohttp so that `--clients` are in flight together), each to a channel with one subscriber,
and subscriptions one after another on one socket, each timed to the last frame it brings
(`subscription_succeeded`, then, on a cache channel, the cached event or `pusher:cache_miss`).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test NATS_URL=nats://127.0.0.1:4222 \\
        .venv/bin/python -m bench.realtime_events [--seconds 5] [--clients 16] [--subscribes 500] [--repeat 2]

Without DATABASE_URL / NATS_URL it starts an embedded PostgreSQL and nats-server, as `make run`
does. The JetStream names are the run's own, and are deleted after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import nats
import psutil
import pusher
import ray
from websockets.asyncio.client import connect

from bench.stack import pct, start_services
from core.events import realtime_cache_stream
from core.realtime import RealtimeApp, parse_apps
from core.settings import Settings
from tests.stack import EdgeProcess, start_edge


def server_sdk(url: str, app: RealtimeApp) -> pusher.Pusher:
    """Pusher's Python SDK pointed at the edge, as the app's server."""
    edge = urlsplit(url)
    return pusher.Pusher(app_id=app.id, key=app.key, secret=app.secret, host=edge.hostname, port=edge.port,
                         ssl=False)


def socket_url(url: str, app: RealtimeApp) -> str:
    return f"{url.replace('http://', 'ws://')}/app/{app.key}?protocol=7"


async def trigger_loop(url: str, app: RealtimeApp, channels: list[str], *, clients: int,
                       seconds: float) -> tuple[list[float], float]:
    """`clients` closed loops triggering on `channels` in turn for `seconds`: latencies, elapsed."""
    sdk = server_sdk(url, app)._pusher_client
    latencies: list[float] = []
    counter = iter(range(10**12))
    deadline = time.perf_counter() + seconds

    async def client(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            request = sdk.trigger.make_request([channels[next(counter) % len(channels)]], "tick", {"n": 1})
            t0 = time.perf_counter()
            async with http.post(f"{request.path}?{urlencode(request.query_params)}", data=request.body,
                                 headers={"Content-Type": "application/json"}) as response:
                body = await response.read()
            latencies.append(time.perf_counter() - t0)
            if response.status != 200:
                raise RuntimeError(f"trigger answered {response.status}: {body[:300]!r}")

    started = time.perf_counter()
    async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=clients)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return latencies, time.perf_counter() - started


async def subscriber(url: str, app: RealtimeApp, channels: list[str]) -> Any:
    """One socket subscribed to every channel (so each trigger fans out to a socket), draining."""
    ws = await connect(socket_url(url, app), max_queue=None)
    await ws.recv()
    for channel in channels:
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))

    async def drain() -> None:
        async for _ in ws:
            pass

    task = asyncio.get_running_loop().create_task(drain())
    return ws, task


async def subscribe_times(url: str, app: RealtimeApp, channels: list[str]) -> list[float]:
    """Subscribe one socket to each channel in turn (and leave it); the time to each
    subscription's last frame."""
    times = []
    async with connect(socket_url(url, app)) as ws:
        await ws.recv()
        for channel in channels:
            frames = 2 if channel.startswith("cache-") else 1
            t0 = time.perf_counter()
            await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": channel}}))
            while frames:
                frame = json.loads(await ws.recv())
                if frame.get("channel") == channel:
                    frames -= 1
                elif frame["event"] == "pusher:error":
                    raise RuntimeError(f"subscribing to {channel}: {frame}")
            times.append(time.perf_counter() - t0)
            # one subscription at a time: an app allows 100 per socket
            await ws.send(json.dumps({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
    return times


def row(label: str, latencies: list[float], per_s: float, cpu: str = "") -> str:
    return (f"{label:<28} {per_s:>8,.0f}/s  p50 {1000 * pct(latencies, 50):6.2f}  "
            f"p99 {1000 * pct(latencies, 99):6.2f} ms  (n {len(latencies):,}){cpu}")


def cpu_s(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="spotless-bench-rt-"))
    services = await start_services(os.environ.get("DATABASE_URL", ""), os.environ.get("NATS_URL", ""), tmp,
                                    namespace_prefix="bench-rt")
    prefix = f"rtbench_{secrets.token_hex(4)}"
    env = {"DATABASE_URL": services.database_url, "NATS_URL": services.nats_url,
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "SPOTLESS_RAY_NAMESPACE": services.namespace,
           "SPOTLESS_DATA_DIR": str(tmp / "data"), "SPOTLESS_JETSTREAM_PREFIX": prefix,
           "SPOTLESS_LOG_LEVEL": "WARNING"}
    edge: EdgeProcess | None = None
    try:
        edge = await asyncio.to_thread(start_edge, env, tmp, workers=1)
        app = parse_apps(Settings().realtime_apps)[0]
        tag = secrets.token_hex(3)
        kinds = {"plain": [f"bench-{tag}.{i}" for i in range(64)],
                 "cache": [f"cache-bench-{tag}.{i}" for i in range(64)]}
        sockets = [await subscriber(edge.url, app, channels) for channels in kinds.values()]
        await asyncio.sleep(1)
        print(f"Pusher HTTP API triggers against one edge worker ({edge.url}), {args.clients} clients in flight, "
              f"{args.seconds:.0f} s per row, 64 channels of each kind with one subscriber each; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        root = psutil.Process(edge.proc.pid)
        edge_processes = [root, *root.children(recursive=True)]
        me = [psutil.Process()]
        per_s: dict[str, list[float]] = {"plain": [], "cache": []}
        p50: dict[str, list[float]] = {"plain": [], "cache": []}
        for run in range(args.repeat):
            for kind, channels in kinds.items():
                await trigger_loop(edge.url, app, channels, clients=args.clients, seconds=1)  # warm up
                edge_before, me_before = cpu_s(edge_processes), cpu_s(me)
                latencies, elapsed = await trigger_loop(edge.url, app, channels, clients=args.clients,
                                                        seconds=args.seconds)
                cpu = (f"; CPU per trigger: edge {1e6 * (cpu_s(edge_processes) - edge_before) / len(latencies):,.0f} µs, "
                       f"this client {1e6 * (cpu_s(me) - me_before) / len(latencies):,.0f} µs")
                per_s[kind].append(len(latencies) / elapsed)
                p50[kind].append(pct(latencies, 50))
                print(row(f"run {run + 1}, {kind} channels", latencies, len(latencies) / elapsed, cpu), flush=True)
        ratio = statistics.median(per_s["cache"]) / statistics.median(per_s["plain"])
        extra = 1000 * (statistics.median(p50["cache"]) - statistics.median(p50["plain"]))
        print(f"cache channels: {ratio:.2f}x the plain channels' triggers/s (medians); p50 {extra:+.2f} ms")
        for ws, task in sockets:
            task.cancel()
            await ws.close()

        print(f"\nsubscriptions, one socket, {args.subscribes} channels of each kind one after another "
              "(to the subscription's last frame):")
        cached = [f"cache-sub-{tag}.{i}" for i in range(args.subscribes // 2)]
        edge_sdk = server_sdk(edge.url, app)
        for channel in cached:
            await asyncio.to_thread(edge_sdk.trigger, channel, "state", {"n": 1})
        subscribes = {"plain": [f"sub-{tag}.{i}" for i in range(args.subscribes)],
                      "cache (half hit, half miss)": cached + [f"cache-miss-{tag}.{i}" for i in
                                                               range(args.subscribes - len(cached))]}
        for label, channels in subscribes.items():
            times = await subscribe_times(edge.url, app, channels)
            print(row(label, times, len(times) / sum(times)))
    finally:
        if edge is not None:
            edge.stop()
        client = await nats.connect(services.nats_url)
        try:
            await client.jetstream().delete_stream(realtime_cache_stream(prefix))
        except Exception:  # noqa: BLE001 (a run that stopped before making it)
            pass
        await client.close()
        for cleanup in reversed(services.cleanups):
            result = cleanup()
            if asyncio.iscoroutine(result):
                await result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per trigger row")
    parser.add_argument("--clients", type=int, default=16, help="triggers in flight")
    parser.add_argument("--subscribes", type=int, default=500, help="subscriptions of each kind")
    parser.add_argument("--repeat", type=int, default=2, help="alternating rows of each kind")
    asyncio.run(main(parser.parse_args()))
