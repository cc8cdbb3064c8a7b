"""Hostile sockets: floods, oversized and pathological frames, stolen or forged signatures.

Each abuse gets the protocol's error (or a close for frames the socket layer refuses), and the
worker stays healthy for everyone else: a bystander socket on the same worker keeps receiving
client events and pongs, and the worker still answers /readyz.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.realtime.conftest import auth_for, unique
from tests.realtime.pusher_client import PusherSocket


@pytest.fixture
async def bystander(sockets, rt_api, party):
    """A user on their private channel on edge 0, with a second socket of theirs on edge 1 that
    sends them client events: `check()` proves the worker still serves them."""
    user = party("client", "Bea Bystander")
    channel = f"private-user.{user.id}"
    here, there = await sockets(0), await sockets(1)
    for sock in (here, there):
        await sock.subscribe(channel, auth_for(rt_api, user, sock.socket_id, channel))
    sequence = iter(range(1_000_000))

    async def check() -> None:
        await here.send("pusher:ping")
        await here.expect("pusher:pong")
        n = next(sequence)
        await there.send("client-still-there", {"n": n}, channel=channel)
        assert (await here.expect("client-still-there", channel))["data"] == {"n": n}
        await asyncio.sleep(0.25)  # keep under the test app's five client events a second

    await check()
    return check


async def errors_until_pong(sock: PusherSocket, seen: list[str] | None = None) -> list[int]:
    """Codes of every pusher:error before the pong that answers a ping sent now (the other
    events go to `seen`)."""
    await sock.send("pusher:ping")
    codes: list[int] = []
    while True:
        frame = await sock.frame(10)
        if frame["event"] == "pusher:pong":
            return codes
        if frame["event"] == "pusher:error":
            codes.append(frame["data"]["code"])
        elif seen is not None:
            seen.append(frame["event"])
        assert frame["event"] != "closed", frame


async def test_a_flood_of_malformed_frames_gets_one_error_each(sockets, bystander):
    # given an attacker on the bystander's worker
    attacker = await sockets(0)
    junk = ["not json", "[]", '{"event": 1}', "\x00\x01", '{"event": "pusher:subscribe", "data": 3}']
    # when it sends five hundred malformed frames as fast as it can
    for n in range(500):
        await attacker.send_raw(junk[n % len(junk)])
    # then each gets a 4200, the attacker's socket still answers, and the bystander was served
    assert await errors_until_pong(attacker) == [4200] * 500
    await bystander()


async def test_deeply_nested_json_is_an_invalid_message_not_a_crash(sockets, bystander):
    attacker = await sockets(0)
    # when frames nest deeper than any parser's recursion limit, within the size limit
    await attacker.send_raw("[" * 1900)
    await attacker.send_raw('{"event": "pusher:subscribe", "data": "' + "[" * 1800 + '"}')
    # then both are refused as invalid messages
    assert await errors_until_pong(attacker) == [4200, 4200]
    await bystander()


async def test_a_frame_over_the_apps_limit_is_refused_and_one_over_the_socket_limit_closes(
        sockets, bystander):
    # given the test app's limit of 2,000 bytes per message
    attacker = await sockets(0)
    # when a frame of 20 kB arrives, the socket gets a 4200 and stays open
    await attacker.send("client-big", {"pad": "x" * 20_000}, channel="private-user.nobody")
    assert await errors_until_pong(attacker) == [4200]
    # when a frame of 1 MB arrives, the socket layer closes the connection (1009: too big)
    await attacker.send_raw(json.dumps({"event": "pusher:ping", "data": {"pad": "x" * 1_000_000}}))
    closed = await attacker.expect("closed", wait_s=10)
    assert "1009" in closed["error"]
    # then the worker still serves everyone else
    await bystander()


async def test_a_subscribe_flood_is_capped_per_socket(sockets, bystander):
    # given the test app allows six subscriptions per socket
    hoarder, churner = await sockets(0), await sockets(0)
    # when one socket asks for three hundred channels, and another churns one channel 150 times
    for _ in range(300):
        await hoarder.send("pusher:subscribe", {"channel": unique("flood-")})
    churn = unique("churn-")
    for _ in range(150):
        await churner.send("pusher:subscribe", {"channel": churn})
        await churner.send("pusher:unsubscribe", {"channel": churn})
    # then six subscriptions succeed and the other 294 are refused with 4100
    assert await errors_until_pong(hoarder) == [4100] * 294
    # and every one of the churner's subscriptions is served, without errors
    seen: list[str] = []
    assert await errors_until_pong(churner, seen) == []
    assert seen.count("pusher_internal:subscription_succeeded") == 150
    await bystander()


async def test_a_client_event_flood_is_rate_limited_and_reaches_nobody_beyond_the_limit(
        sockets, rt_api, party, bystander):
    # given a user with two sockets on their private channel
    user = party("client")
    channel = f"private-user.{user.id}"
    attacker, listener = await sockets(0), await sockets(1)
    for sock in (attacker, listener):
        await sock.subscribe(channel, auth_for(rt_api, user, sock.socket_id, channel))
    # when one socket fires a thousand client events at once
    started = asyncio.get_running_loop().time()
    for n in range(1000):
        await attacker.send("client-spam", {"n": n}, channel=channel)
    codes = await errors_until_pong(attacker)
    elapsed = asyncio.get_running_loop().time() - started
    # then all but the bucket's worth are refused with 4301 (five at once, then five a second),
    # and the listener hears exactly the ones that passed, in order
    heard = []
    while True:
        try:
            heard.append((await listener.expect("client-spam", channel, wait_s=1))["data"]["n"])
        except AssertionError:
            break
    assert set(codes) == {4301} and len(codes) + len(heard) == 1000
    assert heard[:5] == [0, 1, 2, 3, 4] and heard == sorted(heard)
    assert len(heard) <= 5 + 5 * elapsed + 1
    await bystander()


async def test_stolen_and_forged_channel_signatures_are_refused_with_4009(booking, sockets, rt_api, bystander):
    # given a conversation and an attacker who obtained its client's signature for another socket
    client, cleaner, booking_id = await booking()
    channel = f"presence-conversation.{booking_id}"
    victim, attacker = await sockets(0), await sockets(0)
    stolen = auth_for(rt_api, client, victim.socket_id, channel)
    # when the attacker replays it on its own socket
    await attacker.send("pusher:subscribe", {"channel": channel, **stolen})
    await attacker.expect_error(4009)
    # and signs in as the cleaner but rewrites channel_data to pose as the client
    own = auth_for(rt_api, cleaner, attacker.socket_id, channel)
    forged = own["channel_data"].replace(cleaner.id, client.id)
    await attacker.send("pusher:subscribe", {"channel": channel, "auth": own["auth"], "channel_data": forged})
    await attacker.expect_error(4009)
    # and sends channel_data as an object instead of the signed string
    await attacker.send("pusher:subscribe", {"channel": channel, "auth": own["auth"],
                                             "channel_data": json.loads(own["channel_data"])})
    await attacker.expect_error(4009)
    # then the victim's own signature still works for the victim, nobody else became a member,
    # and the worker serves everyone else
    joined = await victim.subscribe(channel, stolen)
    assert joined["data"]["presence"]["ids"] == [client.id]
    await bystander()


async def test_the_worker_stays_ready_after_the_abuse(rt_edge, bystander):
    async with httpx.AsyncClient(base_url=rt_edge.url) as api:
        assert (await api.get("/readyz")).status_code == 200
    await bystander()
