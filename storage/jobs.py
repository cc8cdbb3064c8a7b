"""Durable jobs' bookkeeping in PostgreSQL: which events a consumer has handled, dead letters,
periodic tasks claimed under a row lock, and one-off events released into the outbox when due.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from nats.js import JetStreamContext
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.errors import Conflict, NotFound, Unavailable
from core.events import (
    CREATED_AT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    EventType,
    job_subject,
    jobs_stream,
)
from core.ids import new_id
from storage import audit
from storage.models import FailedJob, User

RETRY_OF_HEADER = "Spotless-Retry-Of"  # the failed_jobs row a re-published job came from


def _db() -> BaseDBAsyncClient:
    client: BaseDBAsyncClient = connections.get("default")
    return client


async def already_processed(consumer: str, event_id: UUID) -> bool:
    rows = await _db().execute_query_dict(
        "SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2", [consumer, event_id])
    return bool(rows)


async def mark_processed(consumer: str, event_id: UUID, *, using: BaseDBAsyncClient | None = None) -> bool:
    """Record that `consumer` handled `event_id`; False when it already had."""
    count, _ = await (using or _db()).execute_query(
        """INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
           ON CONFLICT (consumer, event_id) DO NOTHING""", [consumer, event_id])
    return bool(count)


async def record_failed_job(*, consumer: str, event_id: UUID, event_type: str, payload: Any,
                            error: str, deliveries: int) -> None:
    """Keep a dead-lettered job for people to read; a second report of the same job updates it."""
    await _db().execute_query(
        """INSERT INTO failed_jobs (consumer, event_id, type, payload, error, deliveries)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)
           ON CONFLICT (consumer, event_id) DO UPDATE
           SET error = EXCLUDED.error, deliveries = EXCLUDED.deliveries, failed_at = now(),
               resolution = NULL, resolved_at = NULL, resolved_by_id = NULL""",
        [consumer, event_id, event_type, json.dumps(payload), error[:4000], deliveries])


class JobError(StrEnum):
    ALREADY_RESOLVED = "job_already_resolved"


async def _open_failed_job(job_id: int, *, using: BaseDBAsyncClient) -> FailedJob:
    job = await FailedJob.filter(id=job_id).using_db(using).select_for_update().first()
    if job is None:
        raise NotFound(f"there is no failed job {job_id}")
    if job.resolution is not None:
        raise Conflict(f"this job was already {job.resolution}; it is listed again only if it "
                       "fails again", code=JobError.ALREADY_RESOLVED)
    return job


async def _resolve(job: FailedJob, resolution: str, *, actor: User, reason: str,
                   using: BaseDBAsyncClient) -> None:
    job.resolution, job.resolved_at, job.resolved_by_id = resolution, utcnow(), actor.id
    await job.save(update_fields=["resolution", "resolved_at", "resolved_by_id"], using_db=using)
    await audit.record(actor_id=actor.id, action=f"failed_job.{resolution}", entity_type="failed_job",
                       entity_id=job.id, before={"resolution": None},
                       after={"resolution": resolution, "consumer": job.consumer,
                              "event_id": str(job.event_id), "type": job.type,
                              "reason": reason[:500] or None}, using=using)


async def retry_failed_job(job_id: int, *, actor: User, js: JetStreamContext, prefix: str,
                           publish_timeout_s: float = 2.0) -> FailedJob:
    """Put a dead-lettered job back in its queue and mark it retried, audited.

    It is published again on its job subject with its own event id (so every consumer that
    already handled the event skips it) under a new `Nats-Msg-Id` (so JetStream's duplicate
    window does not drop it). The row stays locked while JetStream confirms, and is marked only
    after that: a NATS failure leaves the job open (503). Should the commit fail after the
    publish, the job runs and still shows open; retrying it again is harmless, because handlers
    are idempotent by event id.
    """
    async with in_transaction() as tx:
        job = await _open_failed_job(job_id, using=tx)
        try:
            await js.publish(
                job_subject(job.type, prefix=prefix), json.dumps(job.payload).encode(),
                stream=jobs_stream(prefix), timeout=publish_timeout_s,
                headers={"Nats-Msg-Id": str(new_id()), EVENT_ID_HEADER: str(job.event_id),
                         EVENT_TYPE_HEADER: job.type, CREATED_AT_HEADER: f"{utcnow().timestamp():.6f}",
                         RETRY_OF_HEADER: str(job.id)})
        except Exception as exc:  # nats-py raises timeouts, no-responders, connection errors
            raise Unavailable(f"the job could not be queued again ({type(exc).__name__}); "
                              "it is still listed", dependency="nats") from exc
        await _resolve(job, "retried", actor=actor, reason="", using=tx)
    return job


async def discard_failed_job(job_id: int, *, actor: User, reason: str = "") -> FailedJob:
    """Mark a dead-lettered job as not to be run, audited with the reason."""
    async with in_transaction() as tx:
        job = await _open_failed_job(job_id, using=tx)
        await _resolve(job, "discarded", actor=actor, reason=reason.strip(), using=tx)
    return job


async def prune_processed_events(*, older_than_s: int) -> int:
    """Forget idempotency keys older than any redelivery could be."""
    count, _ = await _db().execute_query(
        "DELETE FROM processed_events WHERE processed_at < $1", [utcnow() - timedelta(seconds=older_than_s)])
    return int(count)


# --- periodic tasks ---

async def register_task(name: str, *, first_run_at: datetime) -> None:
    await _db().execute_query(
        "INSERT INTO scheduled_tasks (name, next_run_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        [name, first_run_at])


async def run_if_due(name: str, every_s: float, task: Callable[[], Awaitable[object]]) -> bool:
    """Run `task` when `name` is due and no other runner holds it; True when this runner ran it.

    The due row stays locked (FOR UPDATE SKIP LOCKED) while the task runs and its next due time is
    written in the same transaction, so exactly one runner acts on each due time; a runner that
    dies mid-task releases the lock with its connection and the task is due again at once.
    """
    async with in_transaction() as tx:
        rows = await tx.execute_query_dict(
            """SELECT name FROM scheduled_tasks WHERE name = $1 AND next_run_at <= now()
               FOR UPDATE SKIP LOCKED""", [name])
        if not rows:
            return False
        error: str | None = None
        try:
            # A fresh context: the task's own queries must not run inside this transaction (they
            # would be savepoints of it, and calls to Stripe would happen with it open).
            async def run() -> object:
                return await task()

            await asyncio.create_task(run(), context=contextvars.Context())
        except Exception as exc:  # recorded on the row; the task is due again next interval
            error = f"{type(exc).__name__}: {exc}"
        await tx.execute_query(
            """UPDATE scheduled_tasks SET next_run_at = now() + make_interval(secs => $2),
                   last_run_at = now(), last_error = $3 WHERE name = $1""",
            [name, float(every_s), error])
    return True


# --- one-off due events ---

async def schedule_event(event_type: EventType | str, payload: dict[str, Any], *, due_at: datetime,
                         using: BaseDBAsyncClient) -> UUID:
    """Enqueue an event for `due_at`, inside the caller's transaction."""
    event_id = new_id()
    await using.execute_query(
        "INSERT INTO scheduled_events (event_id, type, payload, due_at) VALUES ($1, $2, $3::jsonb, $4)",
        [event_id, str(event_type), json.dumps(payload), due_at])
    return event_id


async def release_due_events(*, limit: int = 500) -> int:
    """Move due scheduled events into the outbox in one statement; each moves exactly once."""
    count, _ = await _db().execute_query(
        """WITH due AS (
               DELETE FROM scheduled_events WHERE id IN (
                   SELECT id FROM scheduled_events WHERE due_at <= now()
                   ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING event_id, type, payload, due_at, id)
           INSERT INTO outbox (event_id, type, payload)
           SELECT event_id, type, payload FROM due ORDER BY due_at, id
           ON CONFLICT (event_id) DO NOTHING""", [limit])
    return int(count)
