"""Reading what decides whether cleaners are free in a window: their weekly rules, the dated
exceptions around it and their time-holding bookings, for any number of cleaners in three
queries. Search (many cleaners) and booking (one cleaner, under its lock) both read through here;
the decision itself is core.availability.is_free."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient

from core.availability import DatedException, WeeklyInterval
from core.bookings import TIME_HOLDING_STATES

# Travel buffers are at most 240 minutes (schema CHECK), so this margin finds every booking
# whose buffered time could touch the window.
BUFFER_MARGIN = timedelta(minutes=240)


@dataclass
class Calendar:
    rules: list[WeeklyInterval] = field(default_factory=list)
    exceptions: list[DatedException] = field(default_factory=list)
    busy: list[tuple[datetime, datetime]] = field(default_factory=list)


async def load_calendars(
    conn: BaseDBAsyncClient, cleaner_ids: Sequence[str | UUID], start: datetime, end: datetime,
    *, ignore_booking: UUID | None = None,
) -> dict[str, Calendar]:
    """Each cleaner's calendar around [start, end), keyed by the cleaner id as text."""
    ids = [str(c) for c in cleaner_ids]
    calendars = {cid: Calendar() for cid in ids}

    async def rows(sql: str, params: list[Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await conn.execute_query_dict(sql, params)
        return found

    for r in await rows(
        "SELECT cleaner_id::text AS id, weekday, start_minute, end_minute FROM availability_rules "
        "WHERE cleaner_id = ANY($1::uuid[])", [ids]):
        calendars[r["id"]].rules.append(WeeklyInterval(r["weekday"], r["start_minute"], r["end_minute"]))
    # Local days around the window in any time zone: UTC date ± 1 covers every offset.
    for r in await rows(
        "SELECT cleaner_id::text AS id, day, kind, start_minute, end_minute FROM availability_exceptions "
        "WHERE cleaner_id = ANY($1::uuid[]) AND day BETWEEN $2 AND $3",
        [ids, (start - timedelta(days=1)).date(), (end + timedelta(days=1)).date()]):
        calendars[r["id"]].exceptions.append(
            DatedException(r["day"], r["kind"], r["start_minute"], r["end_minute"]))
    for r in await rows(
        "SELECT cleaner_id::text AS id, starts_at, ends_at FROM bookings "
        "WHERE cleaner_id = ANY($1::uuid[]) AND state = ANY($2::text[]) "
        "AND starts_at < $3 AND ends_at > $4 AND id IS DISTINCT FROM $5",
        [ids, [str(s) for s in TIME_HOLDING_STATES], end + BUFFER_MARGIN, start - BUFFER_MARGIN,
         ignore_booking]):
        calendars[r["id"]].busy.append((r["starts_at"], r["ends_at"]))
    return calendars
