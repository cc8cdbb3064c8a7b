"""The real pusher-js client (its node build) against a running edge: public and private
channels through the auth endpoint, presence members, a client event, server and chat events."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pusher
import pytest

from tests.realtime.conftest import unique

JS_DIR = Path(__file__).resolve().parent.parent / "realtime_js"


@pytest.fixture(scope="session")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed; the pusher-js test needs them")
    if not (JS_DIR / "node_modules" / "pusher-js").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True,
                       capture_output=True, timeout=300)
    return node


async def test_pusher_js_subscribes_authorises_sees_members_and_client_events(
        node, booking, rt_edge, rt_async):
    # given a booking's two parties, each running pusher-js
    client, cleaner, conversation_id = await booking()
    public_channel = unique("js-public-")
    env = {"EDGE_URL": rt_edge.url, "APP_KEY": "spotless-key", "CLIENT_TOKEN": client.token,
           "CLEANER_TOKEN": cleaner.token, "CLIENT_ID": client.id, "CONVERSATION_ID": conversation_id,
           "PUBLIC_CHANNEL": public_channel, "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(node, str(JS_DIR / "drive.js"), cwd=JS_DIR, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        # when both are subscribed, the server publishes and the client sends a chat message
        ready = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        assert ready == "READY", ready + (await proc.stderr.read()).decode()[-2000:]
        edge = urlsplit(rt_edge.url)
        sdk = pusher.Pusher(app_id="100001", key="spotless-key", secret="test-realtime-secret",
                            host=edge.hostname, port=edge.port, ssl=False)
        await asyncio.to_thread(sdk.trigger, public_channel, "server.hello", {"from": "python"})
        sent = await rt_async[0].post(f"/api/v1/conversations/{conversation_id}/messages",
                                      headers=client.auth, json={"client_msg_id": "js-1", "body": "hi"})
        assert sent.status_code == 201, sent.text
        result = json.loads((await asyncio.wait_for(proc.stdout.readline(), 30)).decode())
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # then every step worked as pusher-js users expect
    assert result["ok"] is True, result
    assert result["private"] == f"private-user.{client.id}"
    assert result["member_added"] == {"id": cleaner.id, "info": {"name": "Cleo Cleaner", "role": "cleaner"}}
    assert result["members_seen_by_cleaner"] == 2
    assert result["me"]["id"] == cleaner.id
    assert result["typing"] == {"data": {"typing": True}, "user_id": cleaner.id}
    assert result["echoed"] == 0
    assert result["server_event"] == {"from": "python"}
    assert result["chat_message"]["seq"] == 1 and result["chat_message"]["body"] == "hi"
