"""NATS stopped for ten seconds under load: requests succeed or are refused with a 503 and
Retry-After, never a 500 or a hang; what was acknowledged is in PostgreSQL once; the outbox
drains once NATS is back; live delivery resumes; and the double-booking race still books once."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import httpx

from tests.faults.conftest import FaultStack, Market
from tests.faults.load import Load, assert_race_clean, bookings_overlapping, race
from tests.realtime.pusher_client import PusherSocket

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
        # and the race booked the slot at most once
        won = assert_race_clean(raced)
        assert won <= await bookings_overlapping(stack, market.cleaners[1], race_day) <= 1
        # and what the apps were told is what PostgreSQL holds, once
        await load.assert_chat_exactly_once()
        await load.assert_bookings_exactly_once()
        # and the events written while NATS was away waited in the outbox, then went out
        assert pending > 0
        await stack.until_outbox_drained()
        # and live delivery works again: a phone subscribing now hears a new message
        client, cleaner, conversation_id = market.conversations[2]
        await live_delivery_works(stack, client, cleaner, conversation_id)

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


async def live_delivery_works(stack: FaultStack, client, cleaner, conversation_id: str) -> None:
    channel = f"presence-conversation.{conversation_id}"
    sock = await PusherSocket.connect(stack.edge.url.replace("http://", "ws://") + "/app/spotless-key?protocol=7")
    try:
        async with httpx.AsyncClient(base_url=stack.edge.url, timeout=20) as http:
            auth = await http.post("/api/v1/broadcasting/auth", headers=cleaner.auth,
                                   data={"socket_id": sock.socket_id, "channel_name": channel})
            assert auth.status_code == 200, auth.text
            await sock.subscribe(channel, auth.json())
            sent = await http.post(f"/api/v1/conversations/{conversation_id}/messages", headers=client.auth,
                                   json={"client_msg_id": f"after-{secrets.token_hex(4)}", "body": "are you there?"})
            assert sent.status_code == 201, sent.text
        frame = await sock.expect("chat.message", channel, wait_s=15)
        assert frame["data"]["body"] == "are you there?" and frame["data"]["seq"] == sent.json()["data"]["seq"]
    finally:
        await sock.close()
