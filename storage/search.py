"""Loading search candidates in bulk: profile, price and schedule of many cleaners at once.

The spatial shards say who serves a point; this module says which of them may be shown and
whether they are free, in at most four queries whatever the number of candidates. Never a query
per cleaner.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tortoise import connections

from core.search import TIME_HOLDING_STATES


@dataclass
class Candidate:
    cleaner_id: str
    name: str
    rating_avg: Decimal
    rating_count: int
    time_zone: str
    travel_buffer_minutes: int
    hourly_rate_minor: int | None
    currency: str
    rules: list[Any] = field(default_factory=list)
    exceptions: list[Any] = field(default_factory=list)
    busy: list[tuple[datetime, datetime]] = field(default_factory=list)


async def _rows(sql: str, params: list[Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await connections.get("default").execute_query_dict(sql, params)
    return rows


async def load_candidates(
    cleaner_ids: list[str], *, service: str | None, window: tuple[datetime, datetime] | None
) -> dict[str, Candidate]:
    """Approved, active cleaners among `cleaner_ids` (offering `service` when given), with their
    schedule, exceptions and time-holding bookings around `window` when given."""
    if not cleaner_ids:
        return {}
    if service is None:
        profiles = await _rows(
            """SELECT p.user_id::text AS id, u.name, p.rating_avg, p.rating_count, p.time_zone,
                      p.travel_buffer_minutes, p.currency, NULL::int AS hourly_rate_minor
               FROM cleaner_profiles p JOIN users u ON u.id = p.user_id
               WHERE p.user_id = ANY($1::uuid[]) AND p.verification_status = 'approved'
                 AND u.suspended_at IS NULL""", [cleaner_ids])
    else:
        profiles = await _rows(
            """SELECT p.user_id::text AS id, u.name, p.rating_avg, p.rating_count, p.time_zone,
                      p.travel_buffer_minutes, COALESCE(t.currency, p.currency) AS currency,
                      s.hourly_rate_minor
               FROM cleaner_profiles p JOIN users u ON u.id = p.user_id
               JOIN cleaner_services s ON s.cleaner_id = p.user_id AND s.service_id = $2
               JOIN service_types t ON t.id = s.service_id AND t.active
               WHERE p.user_id = ANY($1::uuid[]) AND p.verification_status = 'approved'
                 AND u.suspended_at IS NULL""", [cleaner_ids, service])
    found = {
        r["id"]: Candidate(r["id"], r["name"], Decimal(r["rating_avg"]), r["rating_count"], r["time_zone"],
                           r["travel_buffer_minutes"], r["hourly_rate_minor"], r["currency"].strip())
        for r in profiles
    }
    if window is None or not found:
        return found
    from core.availability import DatedException, WeeklyInterval

    ids = list(found)
    start, end = window
    for r in await _rows(
        "SELECT cleaner_id::text AS id, weekday, start_minute, end_minute FROM availability_rules "
        "WHERE cleaner_id = ANY($1::uuid[])", [ids]):
        found[r["id"]].rules.append(WeeklyInterval(r["weekday"], r["start_minute"], r["end_minute"]))
    # Local days around the window in any time zone: UTC date ± 1 covers every offset.
    for r in await _rows(
        "SELECT cleaner_id::text AS id, day, kind, start_minute, end_minute FROM availability_exceptions "
        "WHERE cleaner_id = ANY($1::uuid[]) AND day BETWEEN $2 AND $3",
        [ids, (start - timedelta(days=1)).date(), (end + timedelta(days=1)).date()]):
        found[r["id"]].exceptions.append(
            DatedException(r["day"], r["kind"], r["start_minute"], r["end_minute"]))
    # Travel buffers are at most 240 minutes (schema CHECK), so this margin finds every booking
    # whose buffered time could touch the window.
    margin = timedelta(minutes=240)
    busy: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for r in await _rows(
        "SELECT cleaner_id::text AS id, starts_at, ends_at FROM bookings "
        "WHERE cleaner_id = ANY($1::uuid[]) AND state = ANY($2::text[]) "
        "AND starts_at < $3 AND ends_at > $4",
        [ids, list(TIME_HOLDING_STATES), end + margin, start - margin]):
        busy[r["id"]].append((r["starts_at"], r["ends_at"]))
    for cid, spans in busy.items():
        found[cid].busy = spans
    return found
