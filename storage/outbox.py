"""The transactional outbox: enqueueing inside the caller's transaction, and the relay's side of
the table (taking the relay lock, reading pending rows in id order, marking them sent).

Never publishes: jobs/relay.py does, after the writing transaction has committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient

from core.events import EventType
from core.ids import new_id
from storage.models import OutboxEvent

RELAY_LOCK_KEY = 0x0B7B_0C5E  # pg_try_advisory_xact_lock key shared by every relay


async def enqueue(event_type: EventType | str, payload: dict[str, Any], *,
                  using: BaseDBAsyncClient) -> UUID:
    """Write one event row in the open transaction `using`; return its event id."""
    event_id = new_id()
    await OutboxEvent.create(event_id=event_id, type=str(event_type), payload=payload, using_db=using)
    return event_id


def insert_many_sql(*, type_param: int, ids_param: int, payloads_param: int, hold_param: int | None = None,
                    where: str = "") -> str:
    """The INSERT that writes many events of one type (event ids and JSON payloads as text
    arrays), for a data-modifying CTE of a larger statement: the rows then commit with the change
    they describe, in one round trip. With `hold_param` (seconds, a float), the relay leaves them
    alone until that long after the commit, and `withdraw` may still take them back. `where`, a
    condition, writes them only when it holds (when the statement's change is made)."""
    hold = f"now() + make_interval(secs => ${hold_param})" if hold_param is not None else "NULL"
    condition = f" WHERE {where}" if where else ""
    return (f"INSERT INTO outbox (event_id, type, payload, available_at) SELECT e::uuid, ${type_param}, "
            f"p::jsonb, {hold} FROM unnest(${ids_param}::text[], ${payloads_param}::text[]) AS t(e, p)"
            f"{condition}")


async def withdraw(event_ids: list[UUID], *, using: BaseDBAsyncClient) -> int:
    """Take back events not yet published (held ones, in practice); how many were."""
    if not event_ids:
        return 0
    rows = await using.execute_query_dict(
        "WITH gone AS (DELETE FROM outbox WHERE event_id = ANY($1::uuid[]) AND sent_at IS NULL RETURNING 1) "
        "SELECT count(*) AS n FROM gone", [[str(e) for e in event_ids]])
    return int(rows[0]["n"])


@dataclass(frozen=True)
class PendingEvent:
    id: int
    event_id: UUID
    type: str
    payload_json: bytes
    created_at_s: float  # Unix time the row was written, or its hold ended (the relay's delay is measured from it)


def _json_bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


async def take_relay_lock(*, using: BaseDBAsyncClient) -> bool:
    """Become the one relay for the rest of the transaction `using`; False when another is."""
    rows = await using.execute_query_dict("SELECT pg_try_advisory_xact_lock($1) AS ok", [RELAY_LOCK_KEY])
    return bool(rows[0]["ok"])


async def pending(*, limit: int, using: BaseDBAsyncClient) -> list[PendingEvent]:
    """The oldest unsent events that are not held back, in id order."""
    rows = await using.execute_query_dict(
        """SELECT id, event_id, type, payload::text AS payload,
                  extract(epoch FROM COALESCE(available_at, created_at)) AS ts
           FROM outbox WHERE sent_at IS NULL AND (available_at IS NULL OR available_at <= now())
           ORDER BY id LIMIT $1""",
        [limit],
    )
    return [PendingEvent(r["id"], r["event_id"] if isinstance(r["event_id"], UUID) else UUID(str(r["event_id"])),
                         r["type"], _json_bytes(r["payload"]), float(r["ts"])) for r in rows]


async def mark_sent(ids: list[int], *, using: BaseDBAsyncClient) -> None:
    await using.execute_query(
        "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = ANY($1)",
        [ids],
    )


async def record_failure(row_id: int, error: str, *, using: BaseDBAsyncClient) -> None:
    await using.execute_query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1", [row_id, error[:2000]]
    )


async def count_pending(*, using: BaseDBAsyncClient) -> int:
    rows = await using.execute_query_dict("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")
    return int(rows[0]["n"])
