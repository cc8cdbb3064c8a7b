"""Coalescing concurrent calls into batches: the one way Spotless turns many small round trips
(a Ray call to a shard, a token lookup in PostgreSQL) into one.

A Ray round trip costs about a millisecond and a query a few hundred microseconds of client CPU,
so one per request caps a worker at a few thousand requests a second. Instead every request
bound for one destination joins that destination's queue; at most `max_inflight` calls per
destination are in flight, and each carries every request that queued meanwhile. Under light
load a request leaves on the next loop tick (no added latency); under heavy load batches grow
with the load. Pure asyncio: the `send` function given to it does the I/O.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Any


class Coalescer:
    """Queues items per (shard, method) and sends each queue as one call with a list of items.

    `send(shard, method, items)` must return an awaitable of one result per item.
    """

    def __init__(self, send: Callable[[int, str, list[Any]], Any], *, max_inflight: int) -> None:
        self.send = send
        self.max_inflight = max(1, max_inflight)
        self.queues: dict[tuple[int, str], list[tuple[Any, asyncio.Future[Any]]]] = defaultdict(list)
        self.inflight: dict[tuple[int, str], int] = defaultdict(int)
        self.batches = 0  # how many calls went out (observability, tests)

    def call(self, shard: int, method: str, item: Any) -> asyncio.Future[Any]:
        """Queue `item` now; the future holds its result. A plain function, not a coroutine: on
        a hot path (64 searches a batch) each coroutine layer costs a microsecond or two."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        key = (shard, method)
        queue = self.queues[key]
        queue.append((item, future))
        if len(queue) == 1 and self.inflight[key] < self.max_inflight:
            # Let the other requests of this loop tick join before the call leaves.
            loop.call_soon(self._dispatch, key)
        return future

    def _dispatch(self, key: tuple[int, str]) -> None:
        if not self.queues[key] or self.inflight[key] >= self.max_inflight:
            return
        batch, self.queues[key] = self.queues[key], []
        self.inflight[key] += 1
        self.batches += 1
        asyncio.get_running_loop().create_task(self._run(key, batch))

    async def _run(self, key: tuple[int, str], batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            results = await self.send(key[0], key[1], [item for item, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self.inflight[key] -= 1
            # Dispatch after the callers just answered have run: one that asks again at once
            # (a closed loop, a handler with a second point) rides this next call, not the one after.
            asyncio.get_running_loop().call_soon(self._dispatch, key)
