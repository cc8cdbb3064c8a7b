"""Cleaners can keep themselves online over the socket instead of POST /cleaner/presence."""

from __future__ import annotations

import asyncio

from actors.clients import PresenceClient
from tests.realtime.conftest import auth_for


async def online(settings, cleaner_id: str, *, want: bool, wait_s: float = 10) -> bool:
    client = PresenceClient(settings)
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        flag = (await client.online([cleaner_id]))[cleaner_id]
        if flag == want or asyncio.get_running_loop().time() > deadline:
            return flag
        await asyncio.sleep(0.2)


async def test_a_cleaner_heartbeat_over_the_socket_puts_them_online(party, sockets, rt_api, settings):
    # given a cleaner connected and subscribed to their own private channel
    cleaner = party("cleaner", "Cleo Cleaner")
    sock = await sockets()
    channel = f"private-user.{cleaner.id}"
    await sock.subscribe(channel, auth_for(rt_api, cleaner, sock.socket_id, channel))
    assert await online(settings, cleaner.id, want=False, wait_s=0) is False
    # when the app triggers client-presence with its location
    await sock.send("client-presence", {"lat": 51.5072, "lng": -0.1276}, channel=channel)
    # then the presence shards see the cleaner online
    assert await online(settings, cleaner.id, want=True) is True


async def test_bad_or_misplaced_heartbeats_are_refused_with_4301(party, sockets, rt_api, settings):
    # given a client and a cleaner, each on their own private channel
    client, cleaner = party("client", "Cora Client"), party("cleaner", "Cleo Cleaner")
    client_sock, cleaner_sock = await sockets(), await sockets()
    for account, sock in ((client, client_sock), (cleaner, cleaner_sock)):
        channel = f"private-user.{account.id}"
        await sock.subscribe(channel, auth_for(rt_api, account, sock.socket_id, channel))
    # when a client sends presence, and a cleaner sends a position out of range
    await client_sock.send("client-presence", {"lat": 51.5, "lng": -0.1}, channel=f"private-user.{client.id}")
    await cleaner_sock.send("client-presence", {"lat": 95, "lng": 0}, channel=f"private-user.{cleaner.id}")
    # then both get the protocol's client-event error, and nobody went online
    for sock in (client_sock, cleaner_sock):
        error = await sock.expect("pusher:error")
        assert error["data"]["code"] == 4301
    assert await online(settings, cleaner.id, want=False, wait_s=0) is False
