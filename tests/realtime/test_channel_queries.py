"""Pusher's channel query API (GET /apps/{id}/channels, /channels/{name}, /channels/{name}/users)
answering for the sockets of every edge worker, driven by the official `pusher` SDK."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pusher
import pytest
from pusher.http import GET, POST, Request

from actors.rebalance import kill_shards
from tests.realtime.conftest import APPS, REALTIME_ENV, socket_url, unique
from tests.realtime.pusher_client import PusherSocket
from tests.stack import EdgeProcess, start_edge, start_nats

APP = APPS[0]
QUERY_TIMEOUT_S = 1.0  # the edges' realtime_channel_query_timeout_s (the default)


def sdk(edge: EdgeProcess, *, app_id: str = APP["id"], secret: str = APP["secret"]) -> pusher.Pusher:
    url = urlsplit(edge.url)
    return pusher.Pusher(app_id=app_id, key=APP["key"], secret=secret, host=url.hostname, port=url.port,
                         ssl=False, timeout=10)


async def ask(call: Any, *args: Any, **kwargs: Any) -> Any:
    # The SDK is synchronous (requests); keep the event loop free for the sockets under test.
    return await asyncio.to_thread(call, *args, **kwargs)


def signed(edge: EdgeProcess, method: str, path: str, params: dict[str, Any] | None = None) -> Request:
    """A request signed by the SDK itself, for what its helpers refuse to send."""
    return Request(sdk(edge)._pusher_client, method, path, params or {})


def send(edge: EdgeProcess, request: Request, **changes: str) -> httpx.Response:
    """Send an SDK-signed request, with query parameters changed after signing."""
    params = {**request.query_params, **changes}
    if request.method == GET:
        return httpx.get(f"{edge.url}{request.path}", params=params, timeout=10)
    return httpx.post(f"{edge.url}{request.path}", params=params, content=request.body,
                      headers={"content-type": "application/json"}, timeout=10)


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def join(sock: PusherSocket, channel: str, user_id: str | None = None) -> None:
    """Subscribe as an app's server would authorise it, with the SDK's `authenticate`."""
    auth = None
    if channel.startswith(("private-", "presence-")):
        member = {"user_id": user_id, "user_info": {"name": user_id}} if user_id else None
        auth = pusher.Pusher(app_id=APP["id"], key=APP["key"], secret=APP["secret"]).authenticate(
            channel, sock.socket_id, member)
    await sock.subscribe(channel, auth)


async def eventually(check: Any, wait_s: float = 10) -> Any:
    """`check()`'s answer once it stops raising AssertionError (sockets leave asynchronously)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_queries_count_the_sockets_of_both_workers_and_a_user_once(sockets, rt_edges):
    # given a presence channel with Alice on both edge workers and Bob on one, a private channel
    # with a socket on each worker, and a public channel with one socket on worker 1
    tag = unique("cq")
    room, notes, lobby = f"presence-{tag}.room", f"private-{tag}.notes", f"{tag}.lobby"
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    alice_here, alice_there, bob_there = await sockets(0), await sockets(1), await sockets(1)
    await join(alice_here, room, alice)
    await join(alice_there, room, alice)
    await join(bob_there, room, bob)
    notes_here, notes_there = await sockets(0), await sockets(1)
    await join(notes_here, notes)
    await join(notes_there, notes)
    await join(await sockets(1), lobby)
    here, there = sdk(rt_edges[0]), sdk(rt_edges[1])

    # when a server lists the presence channels with both counts, through worker 0
    listed = await ask(here.channels_info, f"presence-{tag}", ["user_count", "subscription_count"])
    # then Alice counts once among the users, every socket among the subscriptions
    assert listed == {"channels": {room: {"user_count": 2, "subscription_count": 3}}}
    # and asking worker 1 about the one channel, and its users, says the same
    assert await ask(there.channel_info, room, ["user_count", "subscription_count"]) == {
        "occupied": True, "user_count": 2, "subscription_count": 3}
    assert await ask(here.users_info, room) == {"users": [{"id": alice}, {"id": bob}]}
    # and the private and public channels are occupied by their sockets, wherever they are
    assert await ask(here.channel_info, notes, ["subscription_count"]) == {"occupied": True, "subscription_count": 2}
    assert await ask(here.channel_info, lobby) == {"occupied": True}
    assert await ask(there.channels_info, f"private-{tag}") == {"channels": {notes: {}}}
    everything = (await ask(there.channels_info, None, ["subscription_count"]))["channels"]
    assert {name: info for name, info in everything.items() if tag in name} == {
        room: {"subscription_count": 3}, notes: {"subscription_count": 2}, lobby: {"subscription_count": 1}}

    # when Alice leaves on worker 0 (she is still there on worker 1)
    await alice_here.send("pusher:unsubscribe", {"channel": room})

    async def alice_left_once() -> None:
        answer = await ask(here.channel_info, room, ["user_count", "subscription_count"])
        assert answer == {"occupied": True, "user_count": 2, "subscription_count": 2}, answer

    # then she is still a user, with one subscription fewer
    await eventually(alice_left_once)

    # when the last sockets on the presence and the private channel leave
    await alice_there.close()
    await bob_there.close()
    await notes_here.send("pusher:unsubscribe", {"channel": notes})
    await notes_there.close()

    async def vacated() -> None:
        assert await ask(there.channel_info, room, ["user_count", "subscription_count"]) == {
            "occupied": False, "user_count": 0, "subscription_count": 0}
        assert await ask(here.channel_info, notes) == {"occupied": False}

    # then both are unoccupied, unlisted, and the presence channel has no users
    await eventually(vacated)
    assert await ask(here.channels_info, f"presence-{tag}", ["user_count"]) == {"channels": {}}
    assert await ask(here.channels_info, f"private-{tag}") == {"channels": {}}
    assert await ask(here.users_info, room) == {"users": []}
    assert await ask(here.channel_info, lobby) == {"occupied": True}


async def test_other_apps_channels_are_not_counted(sockets, rt_edges):
    # given the same channel name on two apps, a socket of each on worker 1
    channel = unique("shared-cq-")
    await join(await sockets(1, "other-key"), channel)
    # when the first app asks, then its channel is unoccupied
    assert await ask(sdk(rt_edges[0]).channel_info, channel, ["subscription_count"]) == {
        "occupied": False, "subscription_count": 0}
    # and once its own socket joins, only that one counts
    await join(await sockets(0), channel)
    assert await ask(sdk(rt_edges[0]).channel_info, channel, ["subscription_count"]) == {
        "occupied": True, "subscription_count": 1}


async def on_both_workers(sockets: Any, channel: str, user_id: str) -> list[PusherSocket]:
    """One user's two sockets on `channel`, one on each edge worker."""
    here, there = await sockets(0), await sockets(1)
    for sock in (here, there):
        await join(sock, channel, user_id)
    return [here, there]


async def test_a_trigger_asking_for_info_answers_its_channels_counts(sockets, rt_edges):
    # given a presence channel with one user on two workers, and a public channel nobody is on
    tag = unique("cqt")
    room, empty = f"presence-{tag}", f"{tag}-nobody"
    carols = await on_both_workers(sockets, room, "carol")
    # when a server triggers on both asking for the counts (pusher-http-node's `info` option)
    request = signed(rt_edges[1], POST, f"/apps/{APP['id']}/events", {
        "name": "hello", "channels": [room, empty], "data": "{}", "info": "user_count,subscription_count"})
    response = send(rt_edges[1], request)
    # then it is published, and each channel says who was there to hear it
    assert response.status_code == 200, response.text
    assert response.json() == {"channels": {room: {"user_count": 1, "subscription_count": 2},
                                            empty: {"subscription_count": 0}}}
    for sock in carols:
        await sock.expect("hello", room)


async def test_a_batch_answers_each_event_what_its_info_asked(sockets, rt_edges):
    # given a presence channel with one user on two workers
    tag = unique("cqb")
    room, quiet = f"presence-{tag}", f"private-{tag}"
    daves = await on_both_workers(sockets, room, "dave")
    # when a server triggers a batch of three events: two asking for counts, one not
    request = signed(rt_edges[0], POST, f"/apps/{APP['id']}/batch_events", {"batch": [
        {"name": "one", "channel": room, "data": "{}", "info": "user_count,subscription_count"},
        {"name": "two", "channel": room, "data": "{}"},
        {"name": "three", "channel": quiet, "data": "{}", "info": "subscription_count"}]})
    response = send(rt_edges[0], request)
    # then each event gets what it asked of its channel, in order (Pusher's batch answer)
    assert response.status_code == 200, response.text
    assert response.json() == {"batch": [{"user_count": 1, "subscription_count": 2}, {},
                                         {"subscription_count": 0}]}
    for sock in daves:
        await sock.expect("one", room)
        await sock.expect("two", room)
    # and an attribute nobody knows is refused before anything is published
    bad = signed(rt_edges[0], POST, f"/apps/{APP['id']}/batch_events", {"batch": [
        {"name": "four", "channel": room, "data": "{}", "info": "cache"}]})
    problem(send(rt_edges[0], bad), 400, "info_not_allowed")


def test_user_count_and_users_are_refused_for_channels_without_users(rt_edge):
    client = sdk(rt_edge)
    # when user_count is asked of a list not limited to presence channels, then 400 as Pusher says
    for prefix in (None, "private-"):
        with pytest.raises(pusher.errors.PusherBadRequest, match="info_not_allowed"):
            client.channels_info(prefix, ["user_count"])
    # and of one channel that is not a presence channel, or its users
    with pytest.raises(pusher.errors.PusherBadRequest, match="info_not_allowed"):
        client.channel_info("private-cq.x", ["user_count"])
    with pytest.raises(pusher.errors.PusherBadRequest, match="not_a_presence_channel"):
        client.users_info("public-cq")
    # and an attribute nobody knows is named in the refusal
    with pytest.raises(pusher.errors.PusherBadRequest, match="cache"):
        client.channel_info("presence-cq.x", ["user_count", "cache"])


def test_bad_channel_names_and_prefixes_are_refused_with_422(rt_edge):
    for path in ("/channels/cq.", "/channels/a*b", "/channels/a*b/users"):
        response = send(rt_edge, signed(rt_edge, GET, f"/apps/{APP['id']}{path}"))
        assert problem(response, 422, "invalid_channel")["errors"][0]["field"] == "channel_name"
    too_long = signed(rt_edge, GET, f"/apps/{APP['id']}/channels", {"filter_by_prefix": "x" * 200})
    assert problem(send(rt_edge, too_long), 422, "invalid")["errors"][0]["field"] == "filter_by_prefix"
    # while a blank value, signed as sent, is simply no filter
    blank = signed(rt_edge, GET, f"/apps/{APP['id']}/channels", {"filter_by_prefix": "", "info": ""})
    assert send(rt_edge, blank).status_code == 200


def test_bad_signatures_and_unknown_apps_are_refused(rt_edge):
    # when the secret is wrong, then 401
    with pytest.raises(pusher.errors.PusherBadAuth):
        sdk(rt_edge, secret="not-the-secret").channels_info()
    # and a key that is not the app's is a 401 saying so
    path = f"/apps/{APP['id']}/channels"
    assert "auth_key is not the key of app" in problem(
        send(rt_edge, signed(rt_edge, GET, path), auth_key="not-the-key"), 401, "bad_signature")["detail"]
    # and an app that does not exist is a 404
    with pytest.raises(pusher.errors.PusherBadStatus, match="404"):
        sdk(rt_edge, app_id="999999").channel_info("presence-cq")
    path = f"/apps/{APP['id']}/channels/presence-cq"
    request = signed(rt_edge, GET, path, {"info": "subscription_count"})
    # and a query changed after signing, a stale one, or one without a signature, are 401s
    problem(send(rt_edge, request, info="user_count"), 401, "bad_signature")
    problem(send(rt_edge, request, auth_timestamp=str(int(time.time()) - 3600)), 401, "bad_timestamp")
    problem(httpx.get(f"{rt_edge.url}{path}/users", timeout=10), 401, "bad_signature")


async def test_a_killed_worker_is_left_out_without_hanging_the_query(sockets, rt_edges, services, tmp_root):
    # given a third edge worker with a socket on a channel that also has one on worker 0
    channel = unique("cq-doomed-")
    doomed = await asyncio.to_thread(start_edge, {**services, **REALTIME_ENV}, tmp_root)
    try:
        await join(await sockets(0), channel)
        sock = await PusherSocket.connect(socket_url(doomed))
        await join(sock, channel)
        client = sdk(rt_edges[1])

        async def counted_everywhere() -> None:  # once its first heartbeat made it known as alive
            answer = await ask(client.channel_info, channel, ["subscription_count"])
            assert answer == {"occupied": True, "subscription_count": 2}, answer

        await eventually(counted_everywhere)
        # when it is SIGKILLed (the presence-channel shards think it alive for three heartbeats)
        os.kill(doomed.proc.pid, signal.SIGKILL)
        doomed.proc.wait()
        started = time.monotonic()
        answer = await ask(client.channel_info, channel, ["subscription_count"])
        # then the query answers within its timeout, with the sockets that are left
        assert time.monotonic() - started < QUERY_TIMEOUT_S + 4
        assert answer == {"occupied": True, "subscription_count": 1}
        sock.reader.cancel()
    finally:
        doomed.stop()


async def test_without_nats_a_query_is_a_503_not_a_hang(services, settings, tmp_root):
    # given an edge on a NATS server of its own (and presence-channel shards of its own, so
    # that the session's edges never wait for it)
    own_nats, shards = start_nats(tmp_root / unique("cq-nats-")), unique("cq-pc-")
    edge = await asyncio.to_thread(start_edge, {
        **services, **REALTIME_ENV, "NATS_URL": own_nats.url,
        "SPOTLESS_PRESENCE_CHANNEL_SHARD_PREFIX": shards}, tmp_root)
    try:
        client = sdk(edge)

        async def answering() -> None:  # once its new shards are up (a 503 until then)
            try:
                assert await ask(client.channels_info) == {"channels": {}}
            except pusher.errors.PusherBadStatus as exc:
                raise AssertionError(str(exc)) from None

        await eventually(answering, wait_s=30)
        # when NATS goes away
        own_nats.stop()
        await asyncio.sleep(0.5)
        # then channel queries are refused with a 503 and Retry-After, promptly
        for path in ("/channels", "/channels/presence-cq", "/channels/cq"):
            started = time.monotonic()
            response = await asyncio.to_thread(send, edge, signed(edge, GET, f"/apps/{APP['id']}{path}"))
            assert time.monotonic() - started < QUERY_TIMEOUT_S + 4
            assert response.headers["retry-after"]
            problem(response, 503, "unavailable")
        # while a presence channel's users, which only the shards hold, are still listed
        users = await asyncio.to_thread(send, edge, signed(edge, GET, f"/apps/{APP['id']}/channels/presence-cq/users"))
        assert users.status_code == 200 and users.json() == {"users": []}
    finally:
        edge.stop()
        own_nats.stop()
        kill_shards(settings, shards, 2)
