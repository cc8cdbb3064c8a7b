"""Rate limits count across processes in PostgreSQL."""

import asyncio
import secrets

import pytest

from core.errors import RateLimited
from storage import ratelimit


async def test_the_hit_past_the_limit_is_refused_with_a_retry_after(db):
    key = f"test:{secrets.token_hex(4)}"
    for _ in range(3):
        await ratelimit.hit(key, limit=3, window_s=60)
    with pytest.raises(RateLimited) as caught:
        await ratelimit.hit(key, limit=3, window_s=60)
    assert 1 <= caught.value.retry_after_s <= 60


async def test_concurrent_hits_are_all_counted(db):
    key = f"test:{secrets.token_hex(4)}"
    results = await asyncio.gather(*(ratelimit.hit(key, limit=10, window_s=60) for _ in range(25)),
                                   return_exceptions=True)
    assert sum(isinstance(r, RateLimited) for r in results) == 15
