"""The operations dashboard's figures, each window in one SQL statement over the bookings and
users tables: bookings made, gross merchandise value and platform fees of completed bookings,
completion and cancellation rates, sign-ups, and a daily series for the charts. Read-only.

Days and weeks are UTC; a week starts on Monday (PostgreSQL's `date_trunc('week', ...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from tortoise import connections

RATE_WINDOW_DAYS = 30
CHART_DAYS = 14


@dataclass(frozen=True)
class DailyFigure:
    day: date
    bookings: int
    gmv_minor: int


@dataclass(frozen=True)
class Figures:
    bookings_today: int
    bookings_week: int
    gmv_today_minor: int
    gmv_week_minor: int
    fees_today_minor: int
    fees_week_minor: int
    # Of the bookings that started in the last RATE_WINDOW_DAYS and reached an outcome
    # (completed, cancelled or disputed); None when there were none.
    completion_rate: float | None
    cancellation_rate: float | None
    signups_today: int
    signups_week: int
    cleaner_signups_week: int
    daily: list[DailyFigure]


_TOTALS = """
WITH bounds AS (
  SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS today,
         date_trunc('week', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS week)
SELECT
  (SELECT count(*) FROM bookings, bounds WHERE created_at >= today) AS bookings_today,
  (SELECT count(*) FROM bookings, bounds WHERE created_at >= week) AS bookings_week,
  c.gmv_today, c.gmv_week, c.fees_today, c.fees_week,
  r.outcomes, r.completed, r.cancelled,
  (SELECT count(*) FROM users, bounds WHERE created_at >= today AND role <> 'admin') AS signups_today,
  (SELECT count(*) FROM users, bounds WHERE created_at >= week AND role <> 'admin') AS signups_week,
  (SELECT count(*) FROM users, bounds WHERE created_at >= week AND role = 'cleaner') AS cleaner_signups_week
FROM bounds,
LATERAL (
  SELECT COALESCE(sum(amount_minor) FILTER (WHERE completed_at >= bounds.today), 0) AS gmv_today,
         COALESCE(sum(amount_minor), 0) AS gmv_week,
         COALESCE(sum(platform_fee_minor) FILTER (WHERE completed_at >= bounds.today), 0) AS fees_today,
         COALESCE(sum(platform_fee_minor), 0) AS fees_week
  FROM bookings WHERE state IN ('completed', 'disputed') AND completed_at >= bounds.week) c,
LATERAL (
  SELECT count(*) AS outcomes,
         count(*) FILTER (WHERE state = 'completed') AS completed,
         count(*) FILTER (WHERE state = 'cancelled') AS cancelled
  FROM bookings
  WHERE state IN ('completed', 'cancelled', 'disputed')
    AND starts_at >= now() - make_interval(days => $1) AND starts_at < now()) r
"""

_DAILY = """
SELECT d.day::date AS day,
       (SELECT count(*) FROM bookings
         WHERE created_at >= d.day AT TIME ZONE 'UTC'
           AND created_at < (d.day + interval '1 day') AT TIME ZONE 'UTC') AS bookings,
       (SELECT COALESCE(sum(amount_minor), 0) FROM bookings
         WHERE state IN ('completed', 'disputed')
           AND completed_at >= d.day AT TIME ZONE 'UTC'
           AND completed_at < (d.day + interval '1 day') AT TIME ZONE 'UTC') AS gmv_minor
FROM generate_series(date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => $1 - 1),
                     date_trunc('day', now() AT TIME ZONE 'UTC'), interval '1 day') AS d(day)
ORDER BY d.day
"""


async def _rows(sql: str, *params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await connections.get("default").execute_query_dict(sql, list(params))
    return rows


async def figures() -> Figures:
    """Every figure of the dashboard, as of now."""
    totals = (await _rows(_TOTALS, RATE_WINDOW_DAYS))[0]
    daily = [DailyFigure(r["day"], int(r["bookings"]), int(r["gmv_minor"]))
             for r in await _rows(_DAILY, CHART_DAYS)]
    outcomes = int(totals["outcomes"])
    return Figures(
        bookings_today=int(totals["bookings_today"]), bookings_week=int(totals["bookings_week"]),
        gmv_today_minor=int(totals["gmv_today"]), gmv_week_minor=int(totals["gmv_week"]),
        fees_today_minor=int(totals["fees_today"]), fees_week_minor=int(totals["fees_week"]),
        completion_rate=int(totals["completed"]) / outcomes if outcomes else None,
        cancellation_rate=int(totals["cancelled"]) / outcomes if outcomes else None,
        signups_today=int(totals["signups_today"]), signups_week=int(totals["signups_week"]),
        cleaner_signups_week=int(totals["cleaner_signups_week"]), daily=daily,
    )


async def recently_seen_cleaners(*, within_s: float) -> list[str]:
    """Cleaners whose last heartbeat reached PostgreSQL within `within_s`: the only ones a
    presence shard can hold as online (shards write last_seen every presence_flush_s)."""
    rows = await _rows("SELECT cleaner_id::text AS id FROM cleaner_presence "
                       "WHERE last_seen_at > now() - make_interval(secs => $1)", float(within_s))
    return [r["id"] for r in rows]
