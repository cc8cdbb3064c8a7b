"""Durable jobs' bookkeeping in PostgreSQL: which events a consumer has handled, dead letters,
periodic tasks claimed under a row lock, and one-off events released into the outbox when due.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.events import EventType
from core.ids import new_id


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
           SET error = EXCLUDED.error, deliveries = EXCLUDED.deliveries, failed_at = now()""",
        [consumer, event_id, event_type, json.dumps(payload), error[:4000], deliveries])


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
            await task()
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
