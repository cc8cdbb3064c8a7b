"""Fixed-window rate limits counted in PostgreSQL, so every edge worker shares one count."""

from __future__ import annotations

from datetime import timedelta

from tortoise import connections

from core.clock import utcnow
from core.errors import RateLimited


async def hit(key: str, *, limit: int, window_s: int) -> None:
    """Count one hit on `key`; raise RateLimited once `limit` hits fall in the current window."""
    now = utcnow()
    epoch = int(now.timestamp())
    window_start = now - timedelta(seconds=epoch % window_s, microseconds=now.microsecond)
    conn = connections.get("default")
    rows = await conn.execute_query_dict(
        """INSERT INTO rate_limit_hits (key, window_start, hits) VALUES ($1, $2, 1)
           ON CONFLICT (key, window_start) DO UPDATE SET hits = rate_limit_hits.hits + 1
           RETURNING hits""",
        [key[:300], window_start],
    )
    if rows[0]["hits"] > limit:
        retry_after = window_s - (epoch % window_s)
        raise RateLimited(
            f"too many attempts; try again in {retry_after} s", retry_after_s=retry_after
        )


async def prune(*, older_than_s: int = 3600) -> int:
    """Delete counters for windows that ended long ago; return how many rows went."""
    conn = connections.get("default")
    count, _ = await conn.execute_query(
        "DELETE FROM rate_limit_hits WHERE window_start < $1",
        [utcnow() - timedelta(seconds=older_than_s)],
    )
    return int(count)
