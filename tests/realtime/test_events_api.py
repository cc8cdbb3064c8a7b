"""Server-side publishing through Pusher's HTTP events API, driven by the official `pusher` SDK."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import httpx
import pusher
import pytest

from tests.realtime.conftest import APPS, unique
from tests.realtime.test_channel_queries import join
from tests.realtime.test_revocation import closed_with


def sdk(edge, *, app_id="100001", key="spotless-key", secret="test-realtime-secret") -> pusher.Pusher:
    url = urlsplit(edge.url)
    return pusher.Pusher(app_id=app_id, key=key, secret=secret, host=url.hostname, port=url.port,
                         ssl=False, timeout=10)


def terminate(edge, user_id: str, **kwargs) -> dict:
    """Pusher's POST /apps/{app_id}/users/{user_id}/terminate_connections, signed and sent by the
    SDK's own request machinery. (pusher-http-python 3.3.4's `terminate_user_connections` posts to
    /users/{user_id}/terminate_connections, without /apps/{app_id}: Pusher's, Reverb's and our
    path all have it, and the Node.js SDK, tests/realtime_js/server_sdk.cjs, sends it.)"""
    client = sdk(edge, **kwargs)._pusher_client
    return client.http.send_request(pusher.http.Request(
        client, "POST", f"/apps/{client.app_id}/users/{user_id}/terminate_connections", {}))


async def trigger(*args, **kwargs):
    # The SDK is synchronous (requests); keep the event loop free for the sockets under test.
    return await asyncio.to_thread(*args, **kwargs)


async def test_an_event_triggered_with_the_sdk_reaches_subscribers_on_every_worker(sockets, rt_edges):
    # given subscribers on both edge processes
    channel = unique("orders-")
    here, there = await sockets(0), await sockets(1)
    await here.subscribe(channel)
    await there.subscribe(channel)
    # when the server publishes through edge 0
    result = await trigger(sdk(rt_edges[0]).trigger, [channel], "order.updated", {"state": "paid"})
    # then
    assert result == {}
    for sock in (here, there):
        frame = await sock.expect("order.updated", channel)
        assert frame["data"] == {"state": "paid"}


async def test_batch_events_and_socket_exclusion(sockets, rt_edges):
    # given two subscribers
    channel = unique("batch-")
    sender, other = await sockets(0), await sockets(1)
    await sender.subscribe(channel)
    await other.subscribe(channel)
    # when a batch is triggered on behalf of `sender` (its socket_id excluded)
    await trigger(sdk(rt_edges[1]).trigger_batch, [
        {"channel": channel, "name": "first", "data": {"n": 1}, "socket_id": sender.socket_id},
        {"channel": channel, "name": "second", "data": {"n": 2}},
    ])
    # then the other socket gets both in order, the sender only the second
    assert (await other.expect("first", channel))["data"] == {"n": 1}
    assert (await other.expect("second", channel))["data"] == {"n": 2}
    assert (await sender.frame())["event"] == "second"


async def test_apps_are_isolated(sockets, rt_edges):
    # given the same channel name on two apps
    channel = unique("shared-")
    mine, theirs = await sockets(0, "spotless-key"), await sockets(0, "other-key")
    await mine.subscribe(channel)
    await theirs.subscribe(channel)
    # when app "spotless" publishes
    await trigger(sdk(rt_edges[0]).trigger, channel, "hello", {"x": 1})
    # then only its own socket hears it
    await mine.expect("hello", channel)
    await theirs.nothing("hello")


def test_a_wrong_secret_is_refused(rt_edge):
    with pytest.raises(pusher.errors.PusherBadAuth):
        sdk(rt_edge, secret="not-the-secret").trigger("anything", "evt", {})


def test_an_unknown_app_is_refused(rt_edge):
    with pytest.raises(pusher.errors.PusherError):
        sdk(rt_edge, app_id="999999").trigger("anything", "evt", {})


def test_stale_timestamps_and_tampered_bodies_are_refused(rt_edge):
    client = sdk(rt_edge)
    request = client._pusher_client.trigger.make_request(["c"], "evt", {"a": 1})
    url = f"{rt_edge.url}{request.path}"
    old = dict(request.query_params)
    # when the body is changed after signing
    tampered = httpx.post(url, params=old, content=request.body.replace(b'evt', b'evx'),
                          headers={"content-type": "application/json"})
    # then
    assert tampered.status_code == 401 and tampered.json()["code"] == "bad_signature"
    stale = dict(old, auth_timestamp=str(int(time.time()) - 3600))
    response = httpx.post(url, params=stale, content=request.body,
                          headers={"content-type": "application/json"})
    assert response.status_code == 401 and response.json()["code"] == "bad_timestamp"


def test_events_over_the_apps_size_limit_are_refused(rt_edge):
    # given the test app's 2000-byte limit (the SDK itself allows 10 KB), a larger event's data
    # is a 413, as Pusher's HTTP API answers it, naming the field
    with pytest.raises(pusher.errors.PusherBadStatus, match='413.*payload_too_large.*"field":"data"'):
        sdk(rt_edge).trigger("big", "evt", {"blob": "x" * 3000})
    with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
        sdk(rt_edge).trigger_batch([{"channel": "big", "name": "evt", "data": "x" * 3000}])


async def test_a_burst_of_events_of_every_frame_length_arrives_whole_and_in_order(sockets, rt_edges):
    # given a subscriber on each edge
    channel = unique("burst-")
    here, there = await sockets(0), await sockets(1)
    await here.subscribe(channel)
    await there.subscribe(channel)
    # when batches of events whose frames need a one-byte and a two-byte length are published
    # back to back (some written straight to the sockets, some queued behind others)
    sizes = [1, 60, 100, 130, 1200, 1800]
    client = sdk(rt_edges[0])
    for batch in range(12):
        await trigger(client.trigger_batch, [
            {"channel": channel, "name": "tick", "data": {"n": batch * 10 + i, "pad": "x" * sizes[i % len(sizes)]}}
            for i in range(10)])
    # then every socket gets all of them, whole and in the order published
    for sock in (here, there):
        got = [(await sock.expect("tick", channel))["data"] for _ in range(120)]
        assert [d["n"] for d in got] == list(range(120))
        assert [len(d["pad"]) for d in got] == [sizes[i % 10 % len(sizes)] for i in range(120)]


async def test_terminating_a_users_connections_closes_their_sockets_on_every_worker(sockets, rt_edges):
    # given "ada" on a presence channel from two devices (one per worker), "bob" with her there,
    # and the same user id on another app's presence channel
    room = unique("presence-terminate-")
    phone, laptop, bob = await sockets(0), await sockets(1), await sockets(1)
    for sock, user in ((phone, "ada"), (laptop, "ada"), (bob, "bob")):
        await join(sock, room, user)
    elsewhere = await sockets(0, "other-key")
    other = APPS[1]
    await elsewhere.subscribe(room, pusher.Pusher(app_id=other["id"], key=other["key"], secret=other["secret"])
                              .authenticate(room, elsewhere.socket_id, {"user_id": "ada"}))
    # when the app's server terminates her connections through worker 0
    assert await trigger(terminate, rt_edges[0], "ada") == {}
    # then both of her sockets are told why and closed with 4009, which clients do not retry
    for sock in (phone, laptop):
        assert "terminated" in await closed_with(sock, 4009)
    # and bob sees her leave once, and stays connected
    assert (await bob.expect("pusher_internal:member_removed", room))["data"] == {"user_id": "ada"}
    await bob.nothing("pusher_internal:member_removed")
    await bob.send("pusher:ping")
    await bob.expect("pusher:pong")
    # and another app's "ada" is someone else
    await elsewhere.send("pusher:ping")
    await elsewhere.expect("pusher:pong")


def test_terminating_connections_is_signed_like_every_call(rt_edge):
    # a wrong secret, an unknown app and an over-long user id are refused, each saying why
    with pytest.raises(pusher.errors.PusherBadAuth, match="bad_signature"):
        terminate(rt_edge, "ada", secret="wrong")
    with pytest.raises(pusher.errors.PusherBadStatus, match="404.*unknown_app"):
        terminate(rt_edge, "ada", app_id="999")
    with pytest.raises(pusher.errors.PusherBadStatus, match="422.*user_id"):
        terminate(rt_edge, "x" * 201)
