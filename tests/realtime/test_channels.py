"""Channel authorisation, private and presence channels, client events across edge workers."""

from __future__ import annotations

import asyncio

from tests.realtime.conftest import auth_for, unique


async def test_a_user_subscribes_to_their_own_private_channel(sockets, rt_api, party):
    # given
    user = party("client")
    sock = await sockets()
    channel = f"private-user.{user.id}"
    # when
    auth = auth_for(rt_api, user, sock.socket_id, channel)
    # then
    assert auth["auth"].startswith("spotless-key:")
    assert (await sock.subscribe(channel, auth))["channel"] == channel


async def test_an_auth_signed_for_another_socket_is_refused_with_4009(sockets, rt_api, party):
    user = party("client")
    mine, thief = await sockets(), await sockets()
    channel = f"private-user.{user.id}"
    auth = auth_for(rt_api, user, mine.socket_id, channel)
    await thief.send("pusher:subscribe", {"channel": channel, **auth})
    await thief.expect_error(4009)


def test_the_auth_endpoint_refuses_what_the_user_may_not_join(rt_api, party):
    # given
    alice, bob = party("client"), party("cleaner")
    socket = {"socket_id": "123.456"}

    def status(account, channel, **extra):
        response = rt_api.post("/api/v1/broadcasting/auth", headers=account.auth if account else {},
                               data={**socket, "channel_name": channel, **extra})
        return response.status_code, response.json().get("code")

    # then
    assert status(alice, f"private-user.{bob.id}") == (403, "channel_forbidden")
    assert status(alice, "private-booking.00000000-0000-0000-0000-000000000000") == (403, "channel_forbidden")
    assert status(alice, "presence-conversation.not-a-uuid") == (403, "channel_forbidden")
    assert status(alice, "private-unknown.thing") == (403, "channel_forbidden")
    assert status(alice, "public-anything") == (403, "channel_forbidden")
    assert status(alice, "bad channel") == (422, "invalid_channel")
    assert status(alice, f"private-user.{alice.id}", socket_id="1.2; drop") == (422, "invalid")
    assert status(None, f"private-user.{alice.id}")[0] == 401


async def test_only_the_bookings_parties_and_admins_join_its_channels(booking, rt_api, party, db):
    # given a booking and an outsider
    client, cleaner, booking_id = await booking()
    outsider = party("client")
    for channel in (f"private-booking.{booking_id}", f"presence-conversation.{booking_id}"):
        # then the two parties may join, the outsider may not
        for account in (client, cleaner):
            assert "auth" in auth_for(rt_api, account, "1.1", channel)
        refused = rt_api.post("/api/v1/broadcasting/auth", headers=outsider.auth,
                              json={"socket_id": "1.1", "channel_name": channel})
        assert refused.status_code == 403
    # and presence channel_data names the user and their role
    data = auth_for(rt_api, cleaner, "1.1", f"presence-conversation.{booking_id}")["channel_data"]
    assert f'"user_id": "{cleaner.id}"' in data and '"role": "cleaner"' in data


async def test_presence_members_across_workers_with_a_user_on_two_devices_counting_once(
        booking, sockets, rt_api):
    # given a conversation channel and the client on edge 0
    client, cleaner, booking_id = await booking()
    channel = f"presence-conversation.{booking_id}"
    client_phone = await sockets(0)
    joined = await client_phone.subscribe(channel, auth_for(rt_api, client, client_phone.socket_id, channel))
    assert joined["data"]["presence"]["ids"] == [client.id]

    # when the cleaner joins on edge 1 from a phone, then from a laptop on edge 0
    cleaner_phone = await sockets(1)
    seen = await cleaner_phone.subscribe(channel, auth_for(rt_api, cleaner, cleaner_phone.socket_id, channel))
    added = await client_phone.expect("pusher_internal:member_added", channel)
    cleaner_laptop = await sockets(0)
    again = await cleaner_laptop.subscribe(channel, auth_for(rt_api, cleaner, cleaner_laptop.socket_id, channel))

    # then the client saw the cleaner arrive once, with the name and role from channel_data
    assert added["data"] == {"user_id": cleaner.id, "user_info": {"name": "Cleo Cleaner", "role": "cleaner"}}
    await client_phone.nothing("pusher_internal:member_added")
    presence = again["data"]["presence"]
    assert presence["count"] == 2 and set(presence["ids"]) == {client.id, cleaner.id}
    assert seen["data"]["presence"]["hash"][client.id] == {"name": "Cora Client", "role": "client"}

    # when one of the cleaner's devices leaves, nobody is told; when the last leaves, all are
    await cleaner_phone.send("pusher:unsubscribe", {"channel": channel})
    await client_phone.nothing("pusher_internal:member_removed")
    await cleaner_laptop.close()
    removed = await client_phone.expect("pusher_internal:member_removed", channel)
    assert removed["data"] == {"user_id": cleaner.id}


async def test_client_events_reach_others_on_any_worker_but_never_echo(booking, sockets, rt_api):
    # given both parties on the conversation, the client on two sockets on different workers
    client, cleaner, booking_id = await booking()
    channel = f"presence-conversation.{booking_id}"
    typist, client_other_tab, listener = await sockets(0), await sockets(1), await sockets(0)
    for sock, account in ((typist, client), (client_other_tab, client), (listener, cleaner)):
        await sock.subscribe(channel, auth_for(rt_api, account, sock.socket_id, channel))
    # when the client types
    await typist.send("client-typing", {"typing": True}, channel=channel)
    # then everyone else hears it, with the sender's user_id, and the sender does not
    for sock in (listener, client_other_tab):
        frame = await sock.expect("client-typing", channel)
        assert frame["data"] == {"typing": True} and frame["user_id"] == client.id
    await typist.nothing("client-typing")


async def test_client_events_on_private_channels_and_their_rate_limit(sockets, rt_api, party):
    # given two sockets of one user on their private channel
    user = party("client")
    channel = f"private-user.{user.id}"
    one, two = await sockets(0), await sockets(1)
    for sock in (one, two):
        await sock.subscribe(channel, auth_for(rt_api, user, sock.socket_id, channel))
    # when one socket sends faster than 5 client events a second
    for n in range(8):
        await one.send("client-note", {"n": n}, channel=channel)
    # then the first five pass and the rest are refused with 4301
    await one.expect_error(4301)
    received = [(await two.expect("client-note", channel))["data"]["n"] for _ in range(5)]
    assert received == [0, 1, 2, 3, 4]
    await asyncio.sleep(0.5)
    await one.send("client-note", {"n": 99}, channel=channel)
    assert (await two.expect("client-note", channel))["data"]["n"] == 99


async def test_public_channel_names_can_be_shared_across_workers(sockets):
    channel = unique("lobby-")
    one, two = await sockets(0), await sockets(1)
    assert (await one.subscribe(channel))["channel"] == channel
    assert (await two.subscribe(channel))["channel"] == channel


async def test_members_of_a_crashed_worker_are_removed(booking, sockets, rt_api, services, tmp_root):
    # given the cleaner on a third edge process and the client on edge 0
    from tests.realtime.conftest import REALTIME_ENV, socket_url
    from tests.realtime.pusher_client import PusherSocket
    from tests.stack import start_edge

    client, cleaner, booking_id = await booking()
    channel = f"presence-conversation.{booking_id}"
    doomed = await asyncio.to_thread(start_edge, {**services, **REALTIME_ENV}, tmp_root)
    try:
        watcher = await sockets(0)
        await watcher.subscribe(channel, auth_for(rt_api, client, watcher.socket_id, channel))
        ghost = await PusherSocket.connect(socket_url(doomed))
        await ghost.subscribe(channel, auth_for(rt_api, cleaner, ghost.socket_id, channel))
        await watcher.expect("pusher_internal:member_added", channel)
        # when that edge process dies without closing anything
        doomed.proc.kill()
        doomed.proc.wait()
        # then, after a few missed heartbeats, the client is told the cleaner left
        removed = await watcher.expect("pusher_internal:member_removed", channel, wait_s=15)
        assert removed["data"] == {"user_id": cleaner.id}
    finally:
        doomed.stop()
