"""Scheduled work inside the worker process, without a second scheduler product.

`TASKS` lists the periodic tasks; every worker process runs this loop, and a row lock on each
task's `scheduled_tasks` row makes exactly one of them act on each due time
(docs/decisions/0005-scheduler.md). One-off events (booking reminders, invoices) are rows in
`scheduled_events`, moved into the outbox when due by the `release_due_events` task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.clock import utcnow
from core.settings import Settings
from storage import bookings, payments, ratelimit
from storage import jobs as job_store

log = logging.getLogger("spotless.jobs.scheduler")

PROCESSED_EVENTS_KEPT_S = 30 * 86400


@dataclass(frozen=True)
class PeriodicTask:
    name: str
    every_s: float
    run: Callable[[], Awaitable[object]]


def tasks(settings: Settings) -> list[PeriodicTask]:
    """Every periodic task; a new one is one entry here."""
    return [
        PeriodicTask("release_due_events", 1.0, job_store.release_due_events),
        PeriodicTask("prune_rate_limits", settings.rate_limit_prune_every_s,
                     lambda: ratelimit.prune(older_than_s=max(3600, settings.rate_window_s * 2))),
        PeriodicTask("prune_processed_events", 3600.0,
                     lambda: job_store.prune_processed_events(older_than_s=PROCESSED_EVENTS_KEPT_S)),
        PeriodicTask("expire_unanswered_bookings", 60.0,
                     lambda: bookings.expire_unanswered(settings=settings)),
        PeriodicTask("queue_booking_reminders", 60.0, lambda: bookings.reminders_due(settings=settings)),
        PeriodicTask("retry_failed_settlements", 30.0,
                     lambda: payments.retry_failed_settlements(settings=settings)),
    ]


async def register(periodic: list[PeriodicTask]) -> None:
    """Give each task a row (due now) unless it has one."""
    for task in periodic:
        await job_store.register_task(task.name, first_run_at=utcnow())


async def run_due(periodic: list[PeriodicTask]) -> list[str]:
    """One pass: run every task that is due and not held by another runner; return their names."""
    ran = []
    for task in periodic:
        if await job_store.run_if_due(task.name, task.every_s, task.run):
            ran.append(task.name)
    return ran


async def run_scheduler(settings: Settings, stop: asyncio.Event,
                        periodic: list[PeriodicTask] | None = None) -> None:
    """Check for due tasks every `scheduler_tick_s` until `stop` is set."""
    chosen = periodic if periodic is not None else tasks(settings)
    registered = False
    while not stop.is_set():
        try:
            if not registered:
                await register(chosen)
                registered = True
            await run_due(chosen)
        except Exception:  # the database went away; try again next tick
            log.exception("scheduler pass failed")
        try:
            await asyncio.wait_for(stop.wait(), settings.scheduler_tick_s)
        except TimeoutError:
            pass
