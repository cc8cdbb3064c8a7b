"""Processes die: an edge worker killed mid-stream, a presence-channel shard killed under its
members. Clients reconnect and catch up by seq; nothing acknowledged is lost or doubled, and
presence membership is still right on every worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import httpx
import ray

from core.realtime import shard_of_channel
from tests.realtime.conftest import APPS, REALTIME_ENV, auth_for, socket_url
from tests.realtime.pusher_client import PusherSocket
from tests.stack import EdgeProcess, start_edge

APP_ID = APPS[0]["id"]


async def stored_messages(api: httpx.AsyncClient, account: Any, conversation_id: str,
                          after_seq: int = 0) -> list[dict[str, Any]]:
    """Every message after `after_seq`, following pages as an app catching up does."""
    out: list[dict[str, Any]] = []
    while True:
        response = await api.get(f"/api/v1/conversations/{conversation_id}/messages", headers=account.auth,
                                 params={"after_seq": after_seq, "limit": 100})
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        if not page:
            return out
        out += page
        after_seq = page[-1]["seq"]


class ChatApp:
    """What a phone does: listens on the conversation channel, and when its socket drops,
    reconnects to a worker that is up, resubscribes and fetches `after_seq` over REST."""

    def __init__(self, account: Any, conversation_id: str, edges: list[EdgeProcess],
                 rt_api: httpx.Client) -> None:
        self.account, self.conversation_id, self.edges, self.rt_api = account, conversation_id, edges, rt_api
        self.channel = f"presence-conversation.{conversation_id}"
        self.messages: dict[int, dict[str, Any]] = {}  # seq -> message, live or fetched
        self.live_seqs: list[list[int]] = []  # seqs received live, one list per connection
        self.reconnects = 0
        self.sock: PusherSocket | None = None
        self.task: asyncio.Task[None] | None = None

    def contiguous(self) -> int:
        seq = 0
        while seq + 1 in self.messages:
            seq += 1
        return seq

    def _keep(self, message: dict[str, Any]) -> None:
        known = self.messages.setdefault(message["seq"], message)
        assert known == message, f"seq {message['seq']} arrived with two contents: {known} {message}"

    async def connect(self, edge: EdgeProcess) -> None:
        self.sock = await PusherSocket.connect(socket_url(edge))
        auth = await asyncio.to_thread(auth_for, self.rt_api, self.account, self.sock.socket_id, self.channel)
        await self.sock.subscribe(self.channel, auth)
        self.live_seqs.append([])
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as api:
            for message in await stored_messages(api, self.account, self.conversation_id, self.contiguous()):
                self._keep(message)

    async def start(self, edge: EdgeProcess) -> None:
        await self.connect(edge)
        self.task = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            assert self.sock is not None
            frame = await self.sock.frames.get()
            if frame["event"] == "chat.message" and frame.get("channel") == self.channel:
                self.live_seqs[-1].append(frame["data"]["seq"])
                self._keep(frame["data"])
            elif frame["event"] == "closed":
                self.reconnects += 1
                for edge in self.edges:  # the first one that answers, as pusher-js retries
                    if edge.proc.poll() is None:
                        await self.connect(edge)
                        break

    async def until(self, last_seq: int, wait_s: float = 20) -> None:
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            if self.contiguous() >= last_seq:
                return
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.sock is not None:
            await self.sock.close()


async def send_until_acked(account: Any, conversation_id: str, bases: list[str], client_msg_id: str,
                           body: str) -> dict[str, Any]:
    """Send, and on a dropped connection or a 503 retry the same client_msg_id on the next
    worker, as the apps do; returns the acknowledged message."""
    for attempt in range(40):
        base = bases[0] if attempt == 0 else bases[-1]
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as api:
                response = await api.post(f"/api/v1/conversations/{conversation_id}/messages",
                                          headers=account.auth, json={"client_msg_id": client_msg_id, "body": body})
        except httpx.TransportError:
            await asyncio.sleep(0.1)
            continue
        if response.status_code in (200, 201):
            return response.json()["data"]
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.2)
    raise AssertionError(f"{client_msg_id} never acknowledged")


async def test_killing_an_edge_worker_mid_stream_loses_and_doubles_nothing(
        booking, rt_edges, rt_api, services, tmp_root):
    # given a third edge worker, and each party with one phone on it and one on a surviving worker
    client, cleaner, conversation_id = await booking()
    doomed = await asyncio.to_thread(start_edge, {**services, **REALTIME_ENV}, tmp_root)
    survivor = rt_edges[0]
    apps = [ChatApp(account, conversation_id, [survivor, rt_edges[1]], rt_api) for account in (client, cleaner)] + \
           [ChatApp(account, conversation_id, [survivor, rt_edges[1]], rt_api) for account in (client, cleaner)]
    try:
        for number, app in enumerate(apps):
            await app.start(doomed if number < 2 else survivor)

        # when both parties keep sending, the client through the doomed worker, and it is
        # SIGKILLed mid-stream
        async def stream(account: Any, bases: list[str], prefix: str) -> list[dict[str, Any]]:
            acked = []
            for n in range(40):
                acked.append(await send_until_acked(account, conversation_id, bases, f"{prefix}{n}", f"{prefix} {n}"))
                await asyncio.sleep(0.02)
            return acked

        sending = asyncio.gather(stream(client, [doomed.url, survivor.url], "c"),
                                 stream(cleaner, [survivor.url], "k"))
        await asyncio.sleep(0.6)
        os.kill(doomed.proc.pid, signal.SIGKILL)
        acked = [message for batch in await sending for message in batch]

        # then PostgreSQL holds exactly the 80 messages, seqs 1..80, each acknowledged one as acked
        async with httpx.AsyncClient(base_url=survivor.url, timeout=30) as api:
            stored = await stored_messages(api, client, conversation_id)
        assert [m["seq"] for m in stored] == list(range(1, 81))
        by_key = {(m["sender_id"], m["client_msg_id"]): m for m in stored}
        assert len(by_key) == 80
        for message in acked:
            assert by_key[(message["sender_id"], message["client_msg_id"])] == message
        # and every phone, reconnected or not, ends with exactly that history, gapless
        for app in apps:
            await app.until(80)
            assert [app.messages[seq] for seq in sorted(app.messages)] == stored
        # the phones on the killed worker reconnected; live delivery never repeated a seq
        assert [app.reconnects for app in apps] == [1, 1, 0, 0]
        for app in apps:
            for seqs in app.live_seqs:
                assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
        # and the phones that stayed on a live worker got everything live, in order
        assert apps[2].live_seqs == [list(range(1, 81))] and apps[3].live_seqs == [list(range(1, 81))]
    finally:
        for app in apps:
            await app.close()
        doomed.stop()


async def test_presence_members_survive_a_restart_of_their_shard(booking, sockets, rt_api, settings):
    # given the client on edge 0 and the cleaner on edge 1 on a conversation's presence channel
    client, cleaner, booking_id = await booking()
    channel = f"presence-conversation.{booking_id}"
    client_phone, cleaner_phone = await sockets(0), await sockets(1)
    await client_phone.subscribe(channel, auth_for(rt_api, client, client_phone.socket_id, channel))
    await cleaner_phone.subscribe(channel, auth_for(rt_api, cleaner, cleaner_phone.socket_id, channel))
    await client_phone.expect("pusher_internal:member_added", channel)
    count = settings.presence_channel_shards
    shard = shard_of_channel(APP_ID, channel, count)
    actor = ray.get_actor(f"presence-channels-{shard}-of-{count}", namespace=settings.ray_namespace)
    pid = await actor.pid.remote()

    # when the process holding the channel's members is killed, and Ray brings the shard back
    os.kill(pid, signal.SIGKILL)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        with contextlib.suppress(Exception):
            if await actor.pid.remote() != pid:
                break
        assert asyncio.get_running_loop().time() < deadline, "the shard did not come back"
        await asyncio.sleep(0.2)

    # then a new device of the client, on edge 1, is told both are here, and nobody hears the
    # client "arrive" again
    client_laptop = await sockets(1)
    joined = await client_laptop.subscribe(channel, auth_for(rt_api, client, client_laptop.socket_id, channel))
    assert set(joined["data"]["presence"]["ids"]) == {client.id, cleaner.id}
    assert joined["data"]["presence"]["hash"][cleaner.id] == {"name": "Cleo Cleaner", "role": "cleaner"}
    await cleaner_phone.nothing("pusher_internal:member_added", within=1)
    assert (await actor.members.remote(APP_ID, channel)).keys() == {client.id, cleaner.id}
    # when the cleaner's only socket (on edge 1) leaves, both of the client's devices hear it
    await cleaner_phone.close()
    for sock in (client_phone, client_laptop):
        removed = await sock.expect("pusher_internal:member_removed", channel)
        assert removed["data"] == {"user_id": cleaner.id}
    # and when the cleaner comes back on edge 0, both hear them arrive, once
    cleaner_laptop = await sockets(0)
    await cleaner_laptop.subscribe(channel, auth_for(rt_api, cleaner, cleaner_laptop.socket_id, channel))
    for sock in (client_phone, client_laptop):
        added = await sock.expect("pusher_internal:member_added", channel)
        assert added["data"]["user_id"] == cleaner.id
    # but the client closing one of two devices tells nobody
    await client_laptop.close()
    await cleaner_laptop.nothing("pusher_internal:member_removed", within=1)
