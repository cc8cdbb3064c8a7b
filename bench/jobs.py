"""Benchmark: jobs through outbox → relay → JetStream → worker, for a no-op handler and for the
push handler against the local FCM fake (firebase-admin end to end, one device per event).

Two phases per handler: throughput (N events committed first, then the relay and the worker drain
them: jobs/s) and delay (events committed at a steady rate while everything runs: commit →
handler p50/p99). Uses a fresh database on DATABASE_URL's server and its own nats-server from the
venv. Not a test.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.jobs \
        --events 5000 --rate 200 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tortoise.transactions import in_transaction

from cli.embedded import EmbeddedNats, free_port
from core.events import EventType
from core.settings import Settings
from jobs.push import push_worker
from jobs.relay import run_relay
from jobs.runner import connect_nats
from jobs.streams import ensure_streams
from jobs.worker import Job, Worker, WorkerKind
from storage import outbox
from storage.db import close_database, open_database
from storage.devices import register_device
from storage.migrate import migrate
from storage.models import User
from tests.fakes.fcm import FcmFake
from tests.stack import create_database, drop_database

NOOP = "bench.noop"


class Recorder:
    def __init__(self) -> None:
        self.delays_s: list[float] = []
        self.done = 0
        self.last_done = 0.0
        self.target = 0
        self.reached = asyncio.Event()

    async def wait_for(self, count: int) -> None:
        """Until `count` jobs have been handled since the counter was last reset."""
        self.target = count
        if self.done < count:
            self.reached.clear()
            await self.reached.wait()

    def wrap(self, handler: Callable[[Job], Awaitable[None]] | None = None) -> Callable[[Job], Awaitable[None]]:
        async def handle(job: Job) -> None:
            if handler is not None:
                await handler(job)
            now = time.time()
            self.delays_s.append(now - job.payload["t0"])
            self.done += 1
            self.last_done = now
            if self.target and self.done >= self.target:
                self.reached.set()
        return handle


async def enqueue(event_type: str, payload: dict) -> None:
    async with in_transaction() as tx:
        await outbox.enqueue(event_type, {**payload, "t0": time.time()}, using=tx)


async def run_phase(nc, settings: Settings, spec_for: Callable[[Recorder], WorkerKind], event_type: str,
                    payload: Callable[[int], dict], *, events: int, rate: float, seconds: float) -> dict:
    # throughput: commit everything first, then time the drain
    recorder = Recorder()
    for start in range(0, events, 200):
        await asyncio.gather(*(enqueue(event_type, payload(n)) for n in range(start, min(events, start + 200))))
    stop = asyncio.Event()
    began = time.time()
    loops = [asyncio.create_task(run_relay(nc, settings, stop)),
             asyncio.create_task(Worker(nc, settings, spec_for(recorder)).run(stop))]
    await recorder.wait_for(events)
    throughput = events / (recorder.last_done - began)
    # delay: a steady trickle while relay and worker run
    recorder.delays_s.clear()
    steady = int(rate * seconds)
    recorder.done, recorder.target = 0, 0
    trickle_began = time.time()
    for n in range(steady):
        await enqueue(event_type, payload(n))
        await asyncio.sleep(max(0.0, trickle_began + (n + 1) / rate - time.time()))
    achieved = steady / (time.time() - trickle_began)
    await recorder.wait_for(steady)
    stop.set()
    await asyncio.gather(*loops)
    delays = sorted(recorder.delays_s)
    return {"jobs_per_s": throughput, "rate": achieved, "p50_ms": statistics.median(delays) * 1000,
            "p99_ms": delays[int(len(delays) * 0.99) - 1] * 1000}


async def main(args: argparse.Namespace) -> None:
    server_url = os.environ["DATABASE_URL"]
    database_url, name = await create_database(server_url)
    tmp = Path(tempfile.mkdtemp(prefix="spotless-bench-"))
    nats_server = EmbeddedNats(tmp / "nats", free_port())
    nats_server.start()
    fcm = FcmFake()
    fcm.start()
    settings = Settings(database_url=database_url, nats_url=nats_server.url, data_dir=tmp,
                        jetstream_prefix=f"bench_{secrets.token_hex(3)}", job_concurrency=args.concurrency,
                        relay_poll_s=0.01, database_pool_max=args.pool, **fcm.settings_update(tmp))
    try:
        await migrate(database_url)
        await open_database(settings)
        nc = await connect_nats(settings, name="bench-jobs")
        await ensure_streams(nc.jetstream(), settings)
        noop = await run_phase(nc, settings, lambda r: WorkerKind("bench_noop", {NOOP: r.wrap()}), NOOP,
                               lambda n: {"n": n}, events=args.events, rate=args.rate, seconds=args.seconds)
        users = []
        for n in range(200):
            user = await User.create(email=f"bench{n}@example.com", name="Bench", role="client")
            await register_device(actor=user, platform="android", token=f"bench-token-{n}")
            users.append(str(user.id))

        def push_spec(recorder: Recorder) -> WorkerKind:
            spec = push_worker(settings)
            handler = spec.handlers[EventType.PUSH_REQUESTED]
            return WorkerKind(spec.kind, {EventType.PUSH_REQUESTED: recorder.wrap(handler)}, spec.on_close)

        push = await run_phase(
            nc, settings, push_spec, EventType.PUSH_REQUESTED,
            lambda n: {"user_ids": [users[n % len(users)]], "category": "bookings", "title": "Booked",
                       "body": "Friday 10:00", "data": {"route": "bookings/1"}},
            events=args.push_events, rate=args.rate, seconds=args.seconds)
        await nc.close()
        print(f"concurrency {args.concurrency}, pool {args.pool}, relay batch {settings.relay_batch}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
              f"throughput over {args.events} no-op / {args.push_events} push events, "
              f"delay at {args.rate:.0f} events/s for {args.seconds:.0f} s")
        print(f"{'handler':<10}{'jobs/s':>10}{'trickle/s':>11}{'p50 ms':>10}{'p99 ms':>10}")
        for label, r in (("no-op", noop), ("push", push)):
            print(f"{label:<10}{r['jobs_per_s']:>10.0f}{r['rate']:>11.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}")
    finally:
        await close_database()
        await drop_database(server_url, name)
        fcm.stop()
        nats_server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--push-events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool", type=int, default=30, help="database connections")
    asyncio.run(main(parser.parse_args()))
