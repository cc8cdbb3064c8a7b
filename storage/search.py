"""Loading search candidates in bulk: profile, price and schedule of many cleaners at once.

The spatial shards say who serves a point; this module says which of them may be shown and
whether they are free, in at most four queries whatever the number of candidates. Never a query
per cleaner.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from tortoise import connections

from storage.availability import Calendar, load_calendars


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
    photo: dict[str, Any] = field(default_factory=dict)  # photo_* columns of the profile, for the JSON
    calendar: Calendar = field(default_factory=Calendar)  # loaded only when a window is asked


def _json_column(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


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
                      p.photo_path, p.photo_processed_at, p.photo_width, p.photo_height, p.photo_thumbnails,
                      p.travel_buffer_minutes, p.currency, NULL::int AS hourly_rate_minor
               FROM cleaner_profiles p JOIN users u ON u.id = p.user_id
               WHERE p.user_id = ANY($1::uuid[]) AND p.verification_status = 'approved'
                 AND u.suspended_at IS NULL""", [cleaner_ids])
    else:
        profiles = await _rows(
            """SELECT p.user_id::text AS id, u.name, p.rating_avg, p.rating_count, p.time_zone,
                      p.photo_path, p.photo_processed_at, p.photo_width, p.photo_height, p.photo_thumbnails,
                      p.travel_buffer_minutes, COALESCE(t.currency, p.currency) AS currency,
                      s.hourly_rate_minor
               FROM cleaner_profiles p JOIN users u ON u.id = p.user_id
               JOIN cleaner_services s ON s.cleaner_id = p.user_id AND s.service_id = $2
               JOIN service_types t ON t.id = s.service_id AND t.active
               WHERE p.user_id = ANY($1::uuid[]) AND p.verification_status = 'approved'
                 AND u.suspended_at IS NULL""", [cleaner_ids, service])
    found = {
        r["id"]: Candidate(r["id"], r["name"], Decimal(r["rating_avg"]), r["rating_count"], r["time_zone"],
                           r["travel_buffer_minutes"], r["hourly_rate_minor"], r["currency"].strip(),
                           {"path": r["photo_path"], "processed_at": r["photo_processed_at"],
                            "width": r["photo_width"], "height": r["photo_height"],
                            "thumbnails": _json_column(r["photo_thumbnails"])})
        for r in profiles
    }
    if window is None or not found:
        return found
    start, end = window
    calendars = await load_calendars(connections.get("default"), list(found), start, end)
    for cid, calendar in calendars.items():
        found[cid].calendar = calendar
    return found
