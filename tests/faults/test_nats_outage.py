"""NATS stopped for ten seconds under load: requests succeed or are refused with a 503 and
Retry-After, never a 500 or a hang; what was acknowledged is in PostgreSQL once; the outbox
drains once NATS is back; live delivery resumes; and the double-booking race still books once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from tests.faults.conftest import FaultStack, Market
from tests.faults.load import Load, race

OUTAGE_S = 10.0


async def test_ten_seconds_without_nats_under_load_lose_nothing_and_the_outbox_drains_after(
        stack: FaultStack, market: Market):
    async def scenario() -> None:
        race_day = market.fresh_day() + timedelta(hours=9)
        # given the apps chatting, booking, searching and heartbeating, and the relay keeping up
        async with Load(stack, market) as load:
            await load.warm_up()
            # when NATS goes away for ten seconds, and ten clients race for one slot meanwhile
            await stack.stop_nats()
            outage_seen = await not_ready(stack)
            raced = await race(stack, market, market.cleaners[1], race_day)
            await load.run_for(OUTAGE_S - 1)
            pending = (await stack.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL"))[0]["n"]
            await stack.start_nats()
            await stack.until_ready()
            await load.run_for(2)
        print("nats outage:", load.summary())
        # then the edge noticed (/readyz said so, with Retry-After) and still answered every
        # request with success or a clean refusal
        assert outage_seen["checks"]["nats"] == "not connected", outage_seen
        assert load.unclean() == [], load.summary()
        # and the events written while NATS was away waited in the outbox (then went out, below)
        assert pending > 0
        # and the race booked once, PostgreSQL holds what the apps were told once, the outbox
        # drains and live delivery works again
        await load.assert_nothing_lost_or_doubled([(market.cleaners[1], raced)], race_day)

    await asyncio.wait_for(scenario(), 150)


async def not_ready(stack: FaultStack, within_s: float = 5) -> dict:
    """/readyz's 503 problem once the edge has noticed a dependency is gone."""
    async with httpx.AsyncClient(base_url=stack.edge.url, timeout=5) as http:
        deadline = asyncio.get_running_loop().time() + within_s
        while True:
            ready = await http.get("/readyz")
            if ready.status_code == 503:
                assert ready.headers["retry-after"]
                return ready.json()
            assert asyncio.get_running_loop().time() < deadline, "the edge never noticed"
            await asyncio.sleep(0.1)
