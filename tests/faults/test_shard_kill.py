"""A shard actor's process SIGKILLed under load (the conversation shard, then the presence shard):
Ray restarts it, it reloads from PostgreSQL, sends carry on after a short delay, every
acknowledged message is stored once with gapless seqs, no booking is lost or doubled, and the
double-booking race still books once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.faults.conftest import FaultStack, Market
from tests.faults.load import Load, race


async def test_killing_the_conversation_and_presence_shards_under_load_loses_and_doubles_nothing(
        stack: FaultStack, market: Market):
    async def scenario() -> None:
        race_day = market.fresh_day() + timedelta(hours=9)
        # given the apps chatting, booking, searching and heartbeating
        async with Load(stack, market) as load:
            await load.warm_up()
            # when the process of the shard every conversation lives on is killed, while ten
            # clients race for one slot
            racing = asyncio.ensure_future(race(stack, market, market.cleaners[1], race_day))
            dead_conversations = await stack.kill_shard("conversations")
            raced = await racing
            acked_before = len(load.acked)
            # then sends resume: both apps' messages are acknowledged again within the bound
            # (send_until_acked gives each message 60 s; the load raises if one is not)
            await load.run_for(2)
            assert len(load.acked) > acked_before
            # when the presence shard (heartbeats, search's online flags) is killed as well
            dead_presence = await stack.kill_shard("presence")
            await load.run_for(2)
            after = len(load.answers)
            await load.run_for(2)
        print("shard kill:", load.summary())
        assert dead_conversations != dead_presence
        # then every request was answered with success or a clean refusal
        assert load.unclean() == [], load.unclean()[:5]
        # and after the restarts every kind of request succeeds again
        assert {a.kind for a in load.answers[after:] if 200 <= a.status < 300} == {
            "chat", "booking", "search", "heartbeat"}
        # and the race booked the slot at most once, every acknowledged message is stored once
        # at its seq, gapless, bookings once each, and the restarted shard delivers live
        await load.assert_nothing_lost_or_doubled([(market.cleaners[1], raced)], race_day)

    await asyncio.wait_for(scenario(), 150)
