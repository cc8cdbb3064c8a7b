"""PostgreSQL restarted under load: requests in the window succeed or are refused with a 503 and
Retry-After, never a 500 or a hang; nothing is half-written; the edge and the shard actors
reconnect by themselves; and the double-booking race still books once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.faults.conftest import FaultStack, Market
from tests.faults.load import Load, race

DOWN_S = 3.0


async def test_restarting_postgres_under_load_refuses_cleanly_and_recovers_without_restarts(
        stack: FaultStack, market: Market):
    async def scenario() -> None:
        race_day = market.fresh_day() + timedelta(hours=9)
        edge_pid = stack.edge.proc.pid
        # given the apps chatting, booking, searching and heartbeating
        async with Load(stack, market) as load:
            await load.warm_up()
            # when PostgreSQL goes down (a fast shutdown: sessions are cut, open transactions
            # roll back) while ten clients race for one slot, and comes back a few seconds later
            raced_during = asyncio.ensure_future(race(stack, market, market.cleaners[1], race_day))
            await stack.stop_postgres()
            await load.run_for(DOWN_S)
            down = len(load.answers)
            await stack.start_postgres()
            await stack.until_ready()
            await load.run_for(3)
            after = load.answers[down:]
            raced = await raced_during
            # and ten more race for another slot just after it is back
            raced_after = await race(stack, market, market.cleaners[2], race_day)
        print("postgres restart:", load.summary())
        # then every request was answered with success or a clean refusal, and some were refused
        assert load.unclean() == [], [a for a in load.unclean()][:5]
        assert any(a.status == 503 for a in load.answers), load.summary()
        # and the same edge process serves again: every kind succeeded after the restart
        assert stack.edge.proc.poll() is None and stack.edge.proc.pid == edge_pid
        assert {a.kind for a in after if 200 <= a.status < 300} == {"chat", "booking", "search", "heartbeat"}
        # and each race booked its slot at most once, nothing is half-written (messages and
        # bookings exactly once, each with its events), and the conversation shard, whose
        # connections were cut, delivers live again
        await load.assert_nothing_lost_or_doubled(
            [(market.cleaners[1], raced), (market.cleaners[2], raced_after)], race_day)

    await asyncio.wait_for(scenario(), 150)
