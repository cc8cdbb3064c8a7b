"""The edge-side Coalescer: concurrent calls for one shard leave together, and callers answered
by one call who ask again at once ride the very next call instead of waiting a whole round.

The Coalescer takes the function that sends a batch, so these tests give it one that answers
from an asyncio queue the test controls: the batching logic is what is tested; the Ray calls
behind it are tested through the real shards in test_spatial.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.batching import Coalescer


class ControlledShard:
    """Records every batch and answers it when the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.release: dict[int, asyncio.Event] = {}

    async def send(self, shard: int, method: str, items: list[Any]) -> list[Any]:
        number = len(self.batches)
        self.batches.append(list(items))
        self.release[number] = event = asyncio.Event()
        await event.wait()
        return [f"{method}:{item}" for item in items]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_concurrent_calls_leave_as_one_batch_and_each_gets_its_own_answer() -> None:
    # given a coalescer with one call in flight per shard
    shard = ControlledShard()
    coalescer = Coalescer(shard.send, max_inflight=1)

    # when five calls for shard 0 arrive in the same loop tick
    calls = [asyncio.ensure_future(coalescer.call(0, "find", i)) for i in range(5)]
    await settle()
    shard.release[0].set()

    # then one batch carried all five, and every caller got the answer to its own item
    assert await asyncio.gather(*calls) == [f"find:{i}" for i in range(5)]
    assert shard.batches == [[0, 1, 2, 3, 4]]
    assert coalescer.batches == 1


async def test_callers_who_ask_again_at_once_join_the_waiting_ones_in_the_next_call() -> None:
    # given a batch of three callers in flight, and a fourth caller queued behind it
    shard = ControlledShard()
    coalescer = Coalescer(shard.send, max_inflight=1)

    async def ask_twice(item: str) -> Any:
        await coalescer.call(0, "find", item)
        return await coalescer.call(0, "find", item + "'")

    first = [asyncio.ensure_future(ask_twice(name)) for name in ("a", "b", "c")]
    await settle()
    late = asyncio.ensure_future(coalescer.call(0, "find", "d"))
    await settle()
    assert shard.batches == [["a", "b", "c"]]

    # when the first batch is answered and its callers ask again straight away
    shard.release[0].set()
    await settle()

    # then the next call carries the waiting caller and the three who came back, together
    assert shard.batches == [["a", "b", "c"], ["d", "a'", "b'", "c'"]]
    shard.release[1].set()
    assert await late == "find:d"
    assert await asyncio.gather(*first) == ["find:a'", "find:b'", "find:c'"]


async def test_a_failed_call_fails_every_caller_in_it_and_the_next_batch_still_leaves() -> None:
    # given a shard whose first call fails
    calls_made: list[list[Any]] = []

    async def send(shard: int, method: str, items: list[Any]) -> list[Any]:
        calls_made.append(list(items))
        if len(calls_made) == 1:
            raise ConnectionError("shard unavailable")
        return list(items)

    coalescer = Coalescer(send, max_inflight=1)

    # when two callers share the failing call
    results = await asyncio.gather(coalescer.call(0, "find", 1), coalescer.call(0, "find", 2),
                                   return_exceptions=True)

    # then both see the error, and a later call is sent and answered
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert await coalescer.call(0, "find", 3) == 3
    assert calls_made == [[1, 2], [3]]
