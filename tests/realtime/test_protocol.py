"""The Pusher protocol 7 handshake, keep-alive and error codes, driven over a real socket."""

from __future__ import annotations

import json
import re

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.realtime.conftest import socket_url, unique


async def test_connection_is_established_with_a_socket_id_and_activity_timeout(sockets):
    # when
    sock = await sockets()
    # then
    assert re.fullmatch(r"\d+\.\d+", sock.socket_id)
    assert sock.activity_timeout == 2


async def test_ping_is_answered_with_pong(sockets):
    sock = await sockets()
    await sock.send("pusher:ping")
    assert (await sock.expect("pusher:pong"))["event"] == "pusher:pong"


async def test_an_idle_socket_is_pinged_and_closed_with_4201_without_a_pong(rt_edge):
    # given a client that never answers pings
    async with connect(socket_url(rt_edge)) as ws:
        frames = [json.loads(await ws.recv())["event"]]
        # when it stays silent past activity_timeout (2 s) and the pong timeout (1 s)
        frames.append(json.loads(await ws.recv())["event"])
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    # then the server pinged, reported 4201 and closed with that code
    assert frames == ["pusher:connection_established", "pusher:ping"]
    assert error["data"]["code"] == 4201
    assert closed.value.rcvd.code == 4201


async def test_a_socket_answering_pings_stays_open(sockets):
    sock = await sockets()
    await sock.expect("pusher:ping", wait_s=4)
    await sock.send("pusher:pong")
    await sock.expect("pusher:ping", wait_s=4)
    await sock.send("pusher:pong")
    await sock.send("pusher:ping")
    await sock.expect("pusher:pong")


@pytest.mark.parametrize(("key", "query", "code"), [
    ("no-such-key", "?protocol=7", 4001),
    ("spotless-key", "", 4008),
    ("spotless-key", "?protocol=99", 4007),
    ("spotless-key", "?protocol=seven", 4007),
])
async def test_bad_handshakes_get_pusher_error_and_close_with_its_code(rt_edge, key, query, code):
    async with connect(socket_url(rt_edge, key, query)) as ws:
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert error["event"] == "pusher:error" and error["data"]["code"] == code
    assert closed.value.rcvd.code == code


async def test_an_app_over_its_connection_limit_refuses_with_4100(sockets, rt_edge):
    # given the "tiny" app allows one connection per worker
    await sockets(0, "tiny-key")
    # when a second one connects
    async with connect(socket_url(rt_edge, "tiny-key")) as ws:
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    # then
    assert error["data"]["code"] == 4100 and closed.value.rcvd.code == 4100


async def test_a_page_outside_the_apps_allowed_origins_is_refused_with_4009(rt_edge):
    # given the "web" app allows app.spotless.example, *.staff.spotless.example and a dev server
    url = socket_url(rt_edge, "web-key")
    # when a browser on another site opens a socket with its key
    async with connect(url, origin="https://evil.example") as ws:
        error = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    # then it hears why and is closed with 4009, a code pusher-js does not retry
    assert error == {"event": "pusher:error", "data": {"code": 4009, "message": "Origin not allowed"}}
    assert closed.value.rcvd.code == 4009
    # and pages on the allowed origins, and apps that send no Origin, are welcome
    for origin in ("https://app.spotless.example", "https://ops.staff.spotless.example", "http://localhost:5173",
                   None):
        async with connect(url, origin=origin) as ws:
            assert json.loads(await ws.recv())["event"] == "pusher:connection_established", origin
    # but not the dev server's host on another port
    async with connect(url, origin="http://localhost:8080") as ws:
        assert json.loads(await ws.recv())["data"]["code"] == 4009


@pytest.mark.parametrize(("raw", "code"), [
    ("not json", 4200),
    ("[1, 2]", 4200),
    ('{"data": {}}', 4200),
    ('{"event": 5}', 4200),
    ('{"event": "pusher:subscribe", "data": "nope"}', 4200),
    ('{"event": "pusher:subscribe", "data": {"channel": "bad channel!"}}', 4200),
    ('{"event": "pusher:subscribe", "data": {"channel": "a..b"}}', 4200),
    ('{"event": "pusher:subscribe", "data": {"channel": "private-user.x"}}', 4009),
    ('{"event": "pusher:subscribe", "data": {"channel": "private-user.x", "auth": "spotless-key:00"}}', 4009),
    ('{"event": "pusher:subscribe", "data": {"channel": "presence-x", "auth": 7}}', 4009),
    ('{"event": "pusher:whatever", "data": {}}', 4200),
    ('{"event": "client-typing", "channel": "private-never-subscribed", "data": {}}', 4301),
    ('{"event": "client-typing", "data": {}}', 4301),
    ('{"event": "pusher:subscribe", "data": {"channel": "x"}, "pad": "' + "x" * 3000 + '"}', 4200),
])
async def test_every_bad_frame_gets_a_pusher_error_and_the_socket_keeps_working(sockets, raw, code):
    # given
    sock = await sockets()
    # when
    await sock.send_raw(raw)
    # then
    await sock.expect_error(code)
    await sock.send("pusher:ping")
    await sock.expect("pusher:pong")


async def test_binary_frames_are_refused_politely(sockets):
    sock = await sockets()
    await sock.ws.send(b"\xff\x00binary")
    await sock.expect_error(4200)
    await sock.send("pusher:ping")
    await sock.expect("pusher:pong")


async def test_subscribing_beyond_the_per_socket_limit_is_refused(sockets):
    # given the test app allows six subscriptions per socket
    sock = await sockets()
    for _ in range(6):
        await sock.subscribe(unique("limit-"))
    # when
    await sock.send("pusher:subscribe", {"channel": unique("limit-")})
    # then
    await sock.expect_error(4100)


async def test_public_subscribe_unsubscribe_and_resubscribe(sockets, rt_edge):
    sock = await sockets()
    channel = unique("public-")
    succeeded = await sock.subscribe(channel)
    assert succeeded["channel"] == channel
    await sock.send("pusher:unsubscribe", {"channel": channel})
    await sock.send("pusher:ping")
    await sock.expect("pusher:pong")
    assert (await sock.subscribe(channel))["channel"] == channel


async def test_client_events_are_refused_on_public_channels(sockets):
    sock = await sockets()
    channel = unique("public-")
    await sock.subscribe(channel)
    await sock.send("client-typing", {"typing": True}, channel=channel)
    await sock.expect_error(4301)

