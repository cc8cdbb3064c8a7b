"""`spotless worker [kinds]` and `spotless relay`: the job loops of one process, until SIGTERM/SIGINT.

`all` runs the relay, every worker kind and the scheduler. Several such processes may run at
once: the relay and the scheduler elect themselves per batch / per due item in PostgreSQL, and
JetStream shares each durable consumer's jobs between processes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import nats
from nats.aio.client import Client

from core.settings import Settings
from jobs.email import email_worker
from jobs.images import images_worker
from jobs.invoices import invoices_worker
from jobs.push import push_worker
from jobs.realtime import realtime_worker
from jobs.relay import run_relay
from jobs.scheduler import run_scheduler
from jobs.streams import ensure_streams
from jobs.worker import Worker, WorkerKind
from storage.db import close_database, open_database

log = logging.getLogger("spotless.jobs")

WORKER_KINDS: dict[str, Callable[[Settings], WorkerKind]] = {
    "email": email_worker,
    "push": push_worker,
    "images": images_worker,
    "invoices": invoices_worker,
    "realtime": realtime_worker,
}
KINDS = (*WORKER_KINDS, "relay")


async def connect_nats(settings: Settings, *, name: str) -> Client:
    """A NATS client that keeps reconnecting forever; waits for the first connection."""
    delay_s = 0.2
    while True:
        try:
            return await nats.connect(settings.nats_url or "nats://127.0.0.1:4222", name=name,
                                      max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                      connect_timeout=2, allow_reconnect=True)
        except Exception as exc:  # nats-py raises several unrelated types on connect
            log.warning("NATS not reachable (%s); retrying", type(exc).__name__)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)


def resolve_kinds(kinds: list[str]) -> set[str]:
    wanted = set(KINDS) if "all" in kinds or not kinds else set(kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise SystemExit(f"spotless worker: unknown kind(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(KINDS)} or all")
    return wanted


async def run_jobs(nc: Client, settings: Settings, *, kinds: set[str], stop: asyncio.Event,
                   scheduler: bool = True) -> None:
    """The loops of one process on an open database and NATS connection, until `stop`."""
    await ensure_streams(nc.jetstream(), settings)
    loops = [Worker(nc, settings, WORKER_KINDS[k](settings)).run(stop) for k in sorted(kinds & set(WORKER_KINDS))]
    if "relay" in kinds:
        loops.append(run_relay(nc, settings, stop))
    if scheduler:
        loops.append(run_scheduler(settings, stop))
    await asyncio.gather(*loops)


async def run_workers(settings: Settings, *, kinds: list[str]) -> None:
    """Entry point of `spotless worker` (and, with kinds=["relay"], `spotless relay`)."""
    wanted = resolve_kinds(kinds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await open_database(settings)
    nc = await connect_nats(settings, name=f"spotless-worker-{'-'.join(sorted(wanted))}")
    try:
        log.info("running %s", ", ".join(sorted(wanted)))
        await run_jobs(nc, settings, kinds=wanted, stop=stop, scheduler=wanted != {"relay"})
    finally:
        await nc.close()  # every job in hand is settled by now; draining pull subscriptions only waits
        await close_database()
