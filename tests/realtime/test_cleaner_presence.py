"""Cleaners keep themselves online over the socket or REST, and the clients who have a booking
with them hear it on their own private channel (`cleaner.presence`)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import ray

from actors.clients import PresenceClient
from core.clock import utcnow
from core.ids import new_id
from tests.realtime.conftest import REALTIME_ENV, auth_for, unique

PREFIX = REALTIME_ENV["SPOTLESS_PRESENCE_SHARD_PREFIX"]


async def online(settings, cleaner_id: str, *, want: bool, wait_s: float = 10) -> bool:
    client = PresenceClient(settings, prefix=PREFIX)
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        flag = (await client.online([cleaner_id]))[cleaner_id]
        if flag == want or asyncio.get_running_loop().time() > deadline:
            return flag
        await asyncio.sleep(0.2)


async def add_booking(client_id: str, cleaner_id: str, state: str, days: int) -> str:
    """A booking in `state` (the bookings issue's actions would refuse to jump states; tests of
    presence only need the row)."""
    from tortoise import connections

    booking_id, starts = str(new_id()), utcnow() + timedelta(days=days)
    db = connections.get("default")
    await db.execute_query("INSERT INTO cleaner_profiles (user_id) VALUES ($1) ON CONFLICT DO NOTHING",
                           [cleaner_id])
    await db.execute_query(
        "INSERT INTO bookings (id, client_id, cleaner_id, service_id, state, starts_at, ends_at) "
        "VALUES ($1, $2, $3, 'standard', $4, $5, $6)",
        [booking_id, client_id, cleaner_id, state, starts, starts + timedelta(hours=2)])
    return booking_id


async def on_own_channel(sockets, rt_api, account, edge: int = 0):
    sock = await sockets(edge)
    channel = f"private-user.{account.id}"
    await sock.subscribe(channel, auth_for(rt_api, account, sock.socket_id, channel))
    return sock, channel


async def test_a_cleaner_heartbeat_over_the_socket_puts_them_online(party, sockets, rt_api, settings):
    # given a cleaner connected and subscribed to their own private channel
    cleaner = party("cleaner", "Cleo Cleaner")
    sock, channel = await on_own_channel(sockets, rt_api, cleaner)
    assert await online(settings, cleaner.id, want=False, wait_s=0) is False
    # when the app triggers client-presence with its location
    await sock.send("client-presence", {"lat": 51.5072, "lng": -0.1276}, channel=channel)
    # then the presence shards see the cleaner online
    assert await online(settings, cleaner.id, want=True) is True


async def test_bad_or_misplaced_heartbeats_are_refused_with_4301(party, sockets, rt_api, settings):
    # given a client and a cleaner, each on their own private channel
    client, cleaner = party("client", "Cora Client"), party("cleaner", "Cleo Cleaner")
    client_sock, _ = await on_own_channel(sockets, rt_api, client)
    cleaner_sock, _ = await on_own_channel(sockets, rt_api, cleaner)
    # when a client sends presence, and a cleaner sends a position out of range
    await client_sock.send("client-presence", {"lat": 51.5, "lng": -0.1}, channel=f"private-user.{client.id}")
    await cleaner_sock.send("client-presence", {"lat": 95, "lng": 0}, channel=f"private-user.{cleaner.id}")
    # then both get the protocol's client-event error, and nobody went online
    for sock in (client_sock, cleaner_sock):
        error = await sock.expect("pusher:error")
        assert error["data"]["code"] == 4301
    assert await online(settings, cleaner.id, want=False, wait_s=0) is False


async def test_clients_with_a_booking_hear_their_cleaner_come_online_and_follow_them_only_on_the_way(
        db, party, sockets, rt_api):
    # given a cleaner with four clients: an accepted booking, one on the way, one completed and
    # one request the cleaner never accepted, each client listening on their own channel
    cleaner = party("cleaner", "Cleo Cleaner")
    accepted, on_the_way, done, requester = (party("client", n) for n in ("Acc", "Otw", "Done", "Req"))
    await add_booking(accepted.id, cleaner.id, "accepted", days=2)
    tracked = await add_booking(on_the_way.id, cleaner.id, "on_the_way", days=3)
    await add_booking(done.id, cleaner.id, "completed", days=4)
    await add_booking(requester.id, cleaner.id, "requested", days=5)
    listening = {}
    for number, account in enumerate((accepted, on_the_way, done, requester)):
        listening[account.id] = (await on_own_channel(sockets, rt_api, account, edge=number % 2))[0]

    # when the cleaner's app heartbeats over REST
    response = rt_api.post("/api/v1/cleaner/presence", headers=cleaner.auth, json={"lat": 51.5, "lng": -0.12})
    assert response.status_code == 200, response.text

    # then the accepted booking's client hears "online" without a location,
    first = (await listening[accepted.id].expect("cleaner.presence", wait_s=10))["data"]
    assert first["cleaner_id"] == cleaner.id and first["online"] is True and "location" not in first
    # the client whose cleaner is on the way also sees where they are,
    otw = (await listening[on_the_way.id].expect("cleaner.presence", wait_s=10))["data"]
    assert otw["online"] is True and otw["location"] == {"lat": 51.5, "lng": -0.12}
    assert otw["booking_ids"] == [tracked] and otw["at"] == first["at"]
    # and the other two hear nothing
    for account in (done, requester):
        await listening[account.id].nothing("cleaner.presence", within=1.5)

    # when the cleaner moves, heartbeating over the socket
    cleaner_sock, cleaner_channel = await on_own_channel(sockets, rt_api, cleaner, edge=1)
    await cleaner_sock.send("client-presence", {"lat": 51.51, "lng": -0.13}, channel=cleaner_channel)
    # then only the client who follows them gets the new position; nobody hears "online" twice
    moved = (await listening[on_the_way.id].expect("cleaner.presence", wait_s=10))["data"]
    assert moved["location"] == {"lat": 51.51, "lng": -0.13} and moved["online"] is True
    await listening[accepted.id].nothing("cleaner.presence", within=1.5)


async def test_watchers_hear_when_a_cleaner_times_out(db, party, sockets, rt_api, settings):
    # given presence shards of their own with a one-second timeout, publishing as the test app
    quick = settings.model_copy(update={
        "presence_shards": 1, "presence_timeout_s": 1.0, "presence_notify_s": 0.2, "presence_flush_s": 0.5,
        "realtime_apps": REALTIME_ENV["SPOTLESS_REALTIME_APPS"]})
    presence = PresenceClient(quick, prefix=unique("presence-timeout-"))
    try:
        cleaner, client = party("cleaner", "Cleo Cleaner"), party("client", "Cora Client")
        await add_booking(client.id, cleaner.id, "accepted", days=2)
        sock, channel = await on_own_channel(sockets, rt_api, client)
        # when the cleaner heartbeats once and then goes quiet
        await presence.heartbeat(cleaner.id, 51.5, -0.12)
        # then the client hears them come online, then go offline once the timeout passed
        came = (await sock.expect("cleaner.presence", channel, wait_s=10))["data"]
        gone = (await sock.expect("cleaner.presence", channel, wait_s=10))["data"]
        assert (came["online"], gone["online"]) == (True, False)
        assert gone["cleaner_id"] == cleaner.id and gone["at"] > came["at"]
        await sock.nothing("cleaner.presence", within=1)
    finally:
        for shard in presence.shards:
            ray.kill(shard)
