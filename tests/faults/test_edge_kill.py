"""The double-booking race with an edge worker SIGKILLed in the middle of it: the requests it
had in hand die with it (PostgreSQL rolls back what it had not committed), the apps retry on
the surviving worker, and the slot ends up held by exactly one booking.

(Sockets moving to another worker and resuming by seq after an edge worker is killed are
tests/realtime/test_failover.py's.)"""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta

import httpx

from tests.faults.conftest import FaultStack, Market, booking_body
from tests.faults.load import REQUEST_TIMEOUT_S, bookings_overlapping

RACERS = 12


async def in_flight(stack: FaultStack, within_s: float = 5) -> None:
    """Wait until bookings are mid-transaction: queued on the cleaner's advisory lock."""
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        waiting = await stack.query("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        if waiting[0]["n"] >= 2:
            return
        await asyncio.sleep(0.005)


async def test_killing_an_edge_worker_mid_race_leaves_the_slot_booked_exactly_once(
        stack: FaultStack, market: Market):
    async def scenario() -> None:
        cleaner, start = market.cleaners[2], market.fresh_day() + timedelta(hours=10)
        doomed = stack.spare_edge
        bodies = [booking_body(cleaner, start + timedelta(minutes=15 * (i % 4)), market) for i in range(RACERS)]
        try:
            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S,
                                         limits=httpx.Limits(max_connections=RACERS)) as http:
                async def book(i: int, base: str) -> httpx.Response | None:
                    try:
                        return await http.post(f"{base}/api/v1/bookings", json=bodies[i],
                                               headers=market.clients[i].auth)
                    except httpx.TransportError:
                        return None  # the worker died under the request

                # given twelve clients pressing "book" at once, half of them through a worker
                # that is SIGKILLed while their requests are in flight
                first = asyncio.gather(*(book(i, doomed.url if i % 2 else stack.edge.url)
                                         for i in range(RACERS)))
                await in_flight(stack)
                os.kill(doomed.proc.pid, signal.SIGKILL)
                answers = await first
                # when the apps whose request got no answer retry on the surviving worker
                lost = [i for i, answer in enumerate(answers) if answer is None]
                print(f"edge kill: {len(lost)} of {RACERS // 2} requests died with the worker")
                for i, answer in zip(lost, await asyncio.gather(*(book(i, stack.edge.url) for i in lost)),
                                     strict=True):
                    answers[i] = answer
        finally:
            doomed.stop()
        # then every client has an answer: the one booking, or slot_taken
        assert all(answer is not None for answer in answers)
        statuses = sorted(answer.status_code for answer in answers if answer is not None)
        assert set(statuses) <= {201, 409}, [a.text for a in answers if a is not None and a.status_code >= 500]
        assert {a.json()["code"] for a in answers if a is not None and a.status_code == 409} <= {"slot_taken"}
        assert statuses.count(201) <= 1
        # and exactly one booking holds the slot (its client may have heard of it only as a 409,
        # if the worker died between the commit and the answer)
        assert await bookings_overlapping(stack, cleaner, start) == 1

    await asyncio.wait_for(scenario(), 120)
