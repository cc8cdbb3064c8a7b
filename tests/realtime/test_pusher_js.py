"""The real pusher-js client (its node build), and Laravel Echo on it as a Laravel app sets it up
for Reverb, against a running edge: public and private channels through the auth endpoint,
presence members, client events (whispers), server and chat events; its browser build in Chromium
against an app's allowed origins; Pusher's Node.js server SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pusher
import pytest
from playwright.async_api import async_playwright

from tests.realtime.conftest import APPS, unique
from tests.realtime.test_channel_queries import join
from tests.realtime.test_revocation import closed_with

JS_DIR = Path(__file__).resolve().parent.parent / "realtime_js"


@pytest.fixture(scope="session")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed; the pusher-js and Echo tests need them")
    if not all((JS_DIR / "node_modules" / package).is_dir() for package in ("pusher-js", "laravel-echo", "pusher")):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True,
                       capture_output=True, timeout=300)
    return node


async def run_js(script: str, node: str, rt_edge: Any, rt_async: Any, *, client: Any, cleaner: Any,
                 conversation_id: str, public_channel: str, server_channel: str) -> dict[str, Any]:
    """Run a script of tests/realtime_js for the booking's two parties; once it prints READY,
    publish `server.hello` on `server_channel` through Pusher's Python SDK and send a chat message
    over REST; return the JSON line it prints last."""
    env = {"EDGE_URL": rt_edge.url, "APP_KEY": "spotless-key", "CLIENT_TOKEN": client.token,
           "CLEANER_TOKEN": cleaner.token, "CLIENT_ID": client.id, "CONVERSATION_ID": conversation_id,
           "PUBLIC_CHANNEL": public_channel, "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(node, str(JS_DIR / script), cwd=JS_DIR, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert ready == "READY", ready + (await proc.stderr.read()).decode()[-2000:]
        edge = urlsplit(rt_edge.url)
        sdk = pusher.Pusher(app_id="100001", key="spotless-key", secret="test-realtime-secret",
                            host=edge.hostname, port=edge.port, ssl=False)
        await asyncio.to_thread(sdk.trigger, server_channel, "server.hello", {"from": "python"})
        sent = await rt_async[0].post(f"/api/v1/conversations/{conversation_id}/messages",
                                      headers=client.auth, json={"client_msg_id": "js-1", "body": "hi"})
        assert sent.status_code == 201, sent.text
        result: dict[str, Any] = json.loads((await asyncio.wait_for(proc.stdout.readline(), 30)).decode())
        assert await asyncio.wait_for(proc.wait(), 10) == 0, result
        return result
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def run_to_end(script: str, node: str, env: dict[str, str]) -> dict[str, Any]:
    """Run a script of tests/realtime_js that needs nothing from the test while it runs; the JSON
    line it prints last, once it has exited 0."""
    proc = await asyncio.create_subprocess_exec(node, str(JS_DIR / script), cwd=JS_DIR, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode() + err.decode()[-2000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_pusher_js_subscribes_authorises_sees_members_and_client_events(
        node, booking, rt_edge, rt_async):
    # given a booking's two parties, each running pusher-js
    client, cleaner, conversation_id = await booking()
    public_channel = unique("cache-js-")  # a cache channel, public
    # when both are subscribed, the server publishes and the client sends a chat message
    result = await run_js("drive.js", node, rt_edge, rt_async, client=client, cleaner=cleaner,
                          conversation_id=conversation_id, public_channel=public_channel,
                          server_channel=public_channel)

    # then every step worked as pusher-js users expect
    assert result["ok"] is True, result
    assert result["private"] == f"private-user.{client.id}"
    assert result["member_added"] == {"id": cleaner.id, "info": {"name": "Cleo Cleaner", "role": "cleaner"}}
    assert result["members_seen_by_cleaner"] == 2
    assert result["me"]["id"] == cleaner.id
    assert result["typing"] == {"data": {"typing": True}, "user_id": cleaner.id}
    assert result["echoed"] == 0
    assert result["server_event"] == {"from": "python"}
    assert result["cache_miss"] is True and result["cached"] == {"from": "python"}  # its cache, seen by pusher-js
    assert result["chat_message"]["seq"] == 1 and result["chat_message"]["body"] == "hi"


async def test_laravel_echo_as_a_reverb_app_sets_it_up(node, booking, rt_edge, rt_async):
    # given a booking's two parties, each running Laravel Echo with the "reverb" broadcaster and
    # their API token as its bearer token
    client, cleaner, conversation_id = await booking()
    # when both are on the conversation's presence channel, the client on its private channel,
    # the server publishes to that private channel and the client sends a chat message
    result = await run_js("echo.mjs", node, rt_edge, rt_async, client=client, cleaner=cleaner,
                          conversation_id=conversation_id, public_channel=unique("echo-public-"),
                          server_channel=f"private-user.{client.id}")

    # then Echo's private channel, here / joining / leaving, whispers and listeners all work
    assert result["ok"] is True, result
    assert result["here_alone"] == [{"name": "Cora Client", "role": "client"}]
    assert result["joining"] == {"name": "Cleo Cleaner", "role": "cleaner"}
    assert result["cleaner_here"] == ["cleaner", "client"]
    assert result["whisper"] == {"typing": True}
    assert result["echoed"] == 0  # a whisper is not sent back to the one who whispered
    assert result["server_event"] == {"from": "python"}
    assert result["chat_message"]["seq"] == 1 and result["chat_message"]["body"] == "hi"
    assert result["leaving"] == {"name": "Cleo Cleaner", "role": "cleaner"}
    assert all(socket_id.count(".") == 1 for socket_id in result["socket_ids"])


async def test_pushers_node_server_sdk_publishes_and_queries_as_against_pusher(node, sockets, rt_edges):
    # given a public channel with a subscriber on each edge worker, and a presence channel with one member
    tag = unique("node-sdk-")
    channel, room = f"{tag}.orders", f"presence-{tag}.room"
    here, there = await sockets(0), await sockets(1)
    await here.subscribe(channel)
    await there.subscribe(channel)
    member = await sockets(1)
    await join(member, room, "ada")
    # when a Node.js app server uses Pusher's own server SDK (npm `pusher`) against worker 0,
    # excluding `here` from one event
    env = {"EDGE_URL": rt_edges[0].url, "APP_ID": APPS[0]["id"], "APP_KEY": APPS[0]["key"],
           "APP_SECRET": APPS[0]["secret"], "CHANNEL": channel, "PRESENCE_PREFIX": f"presence-{tag}",
           "PRESENCE_CHANNEL": room, "MEMBER_ID": "ada", "EXCLUDED_SOCKET_ID": here.socket_id,
           "PATH": "/usr/bin:/bin"}
    result = await run_to_end("server_sdk.cjs", node, env)

    # then every call is answered as Pusher answers it
    assert result["trigger"] == {"status": 200, "body": {}}
    assert result["excluded"] == {"status": 200, "body": {}}
    assert result["batch"] == {"status": 200, "body": {"batch": [{}, {}]}}  # one answer per event, none asked
    assert result["info"] == {"status": 200, "body": {"channels": {channel: {"subscription_count": 2}}}}
    assert result["channels"] == {"status": 200, "body": {"channels": {room: {"user_count": 1}}}}
    assert result["channel"] == {"status": 200, "body": {"occupied": True, "subscription_count": 2}}
    assert result["users"] == {"status": 200, "body": {"users": [{"id": "ada"}]}}
    # and a request signed with another secret is refused with a problem saying why
    assert result["forged"]["status"] == 401 and result["forged"]["body"]["code"] == "bad_signature"
    # and terminating the member's connections closes her socket on the other worker, saying why
    assert result["terminated"] == {"status": 200, "body": {}}
    assert "terminated" in await closed_with(member, 4009)
    # and the subscribers got exactly these events on the channel, in order, with the SDK's data
    # (an object, or a JSON string) as clients decode it; the excluded socket all but its one
    sent = [("node.hello", {"from": "node"}), ("node.not-for-you", {"n": 0}), ("node.first", {"n": 1}),
            ("node.second", {"n": 2}), ("node.counted", {})]
    assert await events_on(there, channel, 5) == sent
    assert await events_on(here, channel, 4) == [sent[0], *sent[2:]]
    await here.nothing("node.not-for-you", within=0.5)


async def test_end_to_end_encrypted_channels_relay_what_only_the_parties_can_read(node, sockets, rt_edges):
    # given an encrypted channel with a socket of ours on it, subscribed with a signature as any
    # app's auth endpoint gives one (Pusher's Python SDK, with the app's encryption master key)
    channel = unique("private-encrypted-notes.")
    master_key = base64.b64encode(secrets.token_bytes(32)).decode()
    app = APPS[0]
    onlooker = await sockets(1)
    auth = pusher.Pusher(app_id=app["id"], key=app["key"], secret=app["secret"],
                         encryption_master_key_base64=master_key).authenticate(channel, onlooker.socket_id)
    assert set(auth) == {"auth", "shared_secret"}  # what pusher-js needs to decrypt
    await onlooker.subscribe(channel, {"auth": auth["auth"]})
    # when pusher-js subscribes through the Node.js SDK's authorisation and the SDK triggers an
    # event on the channel, through worker 0
    env = {"EDGE_URL": rt_edges[0].url, "APP_ID": app["id"], "APP_KEY": app["key"], "APP_SECRET": app["secret"],
           "MASTER_KEY": master_key, "CHANNEL": channel, "PATH": "/usr/bin:/bin"}
    result = await run_to_end("encrypted.cjs", node, env)
    # then pusher-js read the plain text
    assert result["status"] == 200 and result["received"] == {"text": "the key is under the mat"}
    # while what crossed the edge, as another socket on the channel saw it, was ciphertext
    relayed = await onlooker.expect("secret.note", channel)
    assert set(relayed["data"]) == {"nonce", "ciphertext"} and "mat" not in json.dumps(relayed)
    # and a client event on the channel is refused, as pusher-js itself refuses to send one
    await onlooker.send("client-note", {"text": "plain"}, channel=channel)
    assert "encrypted" in (await onlooker.expect_error(4301))["data"]["message"]


async def events_on(sock: Any, channel: str, count: int) -> list[tuple[str, Any]]:
    """The next `count` events on `channel` as (name, data), every one of them (others skipped)."""
    got: list[tuple[str, Any]] = []
    while len(got) < count:
        frame = await sock.frame()
        if frame.get("channel") == channel:
            got.append((frame["event"], frame["data"]))
    return got


async def test_pusher_js_in_a_browser_connects_from_an_allowed_page_only(node, chromium_path, rt_edge):
    # given pusher-js's browser build on pages served as two sites (Playwright answers for their
    # hosts; the socket itself goes to the real edge), and the "web" app that allows
    # app.spotless.example but not evil.example
    edge = urlsplit(rt_edge.url)
    script = (JS_DIR / "node_modules" / "pusher-js" / "dist" / "web" / "pusher.min.js").read_text()
    page_html = f"""<!doctype html><script src="/pusher.min.js"></script><script>
      window.seen = {{states: [], errors: []}};
      const pusher = new Pusher("web-key", {{wsHost: "{edge.hostname}", wsPort: {edge.port}, forceTLS: false,
                                             enabledTransports: ["ws"], cluster: "local"}});
      pusher.connection.bind("state_change", s => window.seen.states.push(s.current));
      pusher.connection.bind("error", e => window.seen.errors.push((e.error && e.error.data) || e.data || e.type));
      pusher.connection.bind("connected", () => {{ window.seen.socket_id = pusher.connection.socket_id; }});
    </script>"""
    # The pages stand for public sites while the edge listens on loopback, which Chromium's Local
    # Network Access checks would block before any handshake; in production the edge is public.
    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(executable_path=str(chromium_path), headless=True,
                                               args=["--disable-features=LocalNetworkAccessChecks"])
    try:
        context = await browser.new_context()

        async def serve(route: Any) -> None:
            if route.request.url.endswith("/pusher.min.js"):
                await route.fulfill(body=script, content_type="application/javascript")
            else:
                await route.fulfill(body=page_html, content_type="text/html")

        await context.route("http://app.spotless.example/**", serve)
        await context.route("http://evil.example/**", serve)
        seen: dict[str, Any] = {}
        for site in ("app.spotless.example", "evil.example"):
            page = await context.new_page()
            sockets: list[Any] = []
            page.on("websocket", lambda socket, sockets=sockets: sockets.append(socket))
            # when a browser opens the site's page
            await page.goto(f"http://{site}/")
            await page.wait_for_function("window.seen.socket_id || window.seen.errors.length", timeout=15_000)
            await asyncio.sleep(1.5)  # pusher-js retries within 1 s (its backoff), had it been told to
            seen[site] = {**await page.evaluate("window.seen"), "sockets": len(sockets)}
            await page.close()
    finally:
        await browser.close()
        await playwright.stop()

    # then the allowed page is connected, with a Pusher socket id
    assert seen["app.spotless.example"]["states"][-1] == "connected", seen
    assert seen["app.spotless.example"]["socket_id"].count(".") == 1
    # and the other site's page heard 4009 "Origin not allowed" and did not retry: one socket, not connected
    evil = seen["evil.example"]
    assert {"code": 4009, "message": "Origin not allowed"} in evil["errors"], evil
    assert "connected" not in evil["states"] and evil["sockets"] == 1, evil
