"""Rebalancing the presence-channel shards (`spotless actors rebalance --presence-channels N`)
under live sockets on two edge workers: members stay listed once, nobody hears a member come or
go because of the switch, joins and leaves made meanwhile are told exactly once, and a crashed
worker's members are still dropped by the new shards.

The edges here have presence-channel shards of their own prefix, so the session's other edges
never see these rebalances. Sockets use the second test app, whose channel auth the test signs
itself with the official server SDK, as that app's server would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pusher
import pytest
import pytest_asyncio

from actors.presence_channels import PresenceChannels
from actors.rebalance import kill_shards, rebalance
from core.settings import Settings
from storage import shard_layout
from tests.actors.rebalance_scenarios import connected_bus
from tests.realtime.conftest import APPS, REALTIME_ENV, socket_url
from tests.realtime.pusher_client import PusherSocket
from tests.stack import EdgeProcess, start_edge

APP = APPS[1]  # an app whose server authorises any presence channel
SDK = pusher.Pusher(app_id=APP["id"], key=APP["key"], secret=APP["secret"])
HEARTBEAT_S = 2.0
MEMBER_EVENTS = ("pusher_internal:member_added", "pusher_internal:member_removed")


@pytest.fixture(scope="module")
def own_edges(services: dict[str, str], tmp_root: Path) -> Iterator[tuple[dict[str, str], list[EdgeProcess]]]:
    env = {**services, **REALTIME_ENV, "SPOTLESS_PRESENCE_CHANNEL_SHARD_PREFIX": f"rt-pc-{secrets.token_hex(3)}",
           "SPOTLESS_PRESENCE_CHANNEL_SHARDS": "2", "SPOTLESS_REALTIME_WORKER_HEARTBEAT_S": str(HEARTBEAT_S)}
    edges = [start_edge(env, tmp_root) for _ in range(2)]
    yield env, edges
    for edge in edges:
        edge.stop()


@pytest.fixture
def mine(settings: Settings, own_edges: tuple[dict[str, str], list[EdgeProcess]]) -> Settings:
    """The test's settings for the edges' presence-channel set (rebalances run from here)."""
    return settings.model_copy(update={
        "presence_channel_shard_prefix": own_edges[0]["SPOTLESS_PRESENCE_CHANNEL_SHARD_PREFIX"],
        "presence_channel_shards": 2, "realtime_worker_heartbeat_s": HEARTBEAT_S, "rebalance_grace_s": 0.5,
        "shard_layout_wait_s": 20.0})


class Phone:
    """One socket of one user on one edge worker, recording the member events it hears."""

    def __init__(self, sock: PusherSocket, user_id: str) -> None:
        self.sock, self.user_id = sock, user_id
        self.heard: list[tuple[str, str, str]] = []  # (channel, event, user id)
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, edge: EdgeProcess, user_id: str) -> Phone:
        return cls(await PusherSocket.connect(socket_url(edge, APP["key"])), user_id)

    async def _read(self) -> None:
        while True:
            frame = await self.sock.frames.get()
            if frame["event"] in MEMBER_EVENTS:
                self.heard.append((frame["channel"], frame["event"], frame["data"]["user_id"]))
            elif frame["event"] != "pusher:ping":
                await self.replies.put(frame)

    async def join(self, channel: str) -> list[str]:
        """Subscribe; return the member ids the channel listed."""
        data = json.dumps({"user_id": self.user_id, "user_info": {"name": self.user_id}})
        auth = SDK.authenticate(channel=channel, socket_id=self.sock.socket_id, custom_data=json.loads(data))
        await self.sock.send("pusher:subscribe", {"channel": channel, **auth})
        while True:
            frame = await asyncio.wait_for(self.replies.get(), 30)
            assert frame["event"] == "pusher_internal:subscription_succeeded", frame
            if frame["channel"] == channel:
                ids: list[str] = frame["data"]["presence"]["ids"]
                return ids

    async def leave(self, channel: str) -> None:
        await self.sock.send("pusher:unsubscribe", {"channel": channel})

    def about(self, users: set[str]) -> list[tuple[str, str, str]]:
        return [event for event in self.heard if event[2] in users]

    async def close(self) -> None:
        self.reader.cancel()
        await self.sock.close()


async def settle(phones: list[Phone], quiet_s: float = 1.5) -> None:
    """Wait until no member event arrived for `quiet_s` (NATS delivered everything)."""
    while True:
        before = sum(len(p.heard) for p in phones)
        await asyncio.sleep(quiet_s)
        if sum(len(p.heard) for p in phones) == before:
            return


async def test_members_stay_right_through_a_rebalance_of_the_presence_channel_shards_2_3_1(
        db, own_edges, mine):
    # given six presence channels, each with a watcher on each edge worker, Anna on edge 0 and
    # again (a second device) on edge 1, and Ben on edge 1
    _, edges = own_edges
    tag = secrets.token_hex(3)
    channels = [f"presence-rebalance.{tag}-{i}" for i in range(6)]
    watchers = [await Phone.open(edges[n], f"watcher-{n}-{tag}") for n in (0, 1)]
    anna, anna_laptop = await Phone.open(edges[0], f"anna-{tag}"), await Phone.open(edges[1], f"anna-{tag}")
    ben = await Phone.open(edges[1], f"ben-{tag}")
    churners = [await Phone.open(edges[k % 2], f"churner-{k}-{tag}") for k in range(4)]
    phones = [*watchers, anna, anna_laptop, ben, *churners]
    stable = {anna.user_id, ben.user_id} | {w.user_id for w in watchers}
    bus = await connected_bus(mine, "presence-channels-rebalance-test")
    try:
        for phone in (*watchers, anna, anna_laptop, ben):
            for channel in channels:
                await phone.join(channel)
        await settle(phones)
        for phone in phones:
            phone.heard.clear()

        # when churners keep joining and leaving, Anna's laptop keeps leaving and coming back,
        # and the shards go 2 -> 3 -> 1 meanwhile, Ben leaving the first channel during the second
        stop = asyncio.Event()
        cycles: dict[tuple[str, str], int] = {}
        listed: list[list[str]] = []

        async def churn(phone: Phone, offset: int) -> None:
            n = offset
            while not stop.is_set():
                channel = channels[n % len(channels)]
                listed.append(await phone.join(channel))
                cycles[(channel, phone.user_id)] = cycles.get((channel, phone.user_id), 0) + 1
                await asyncio.sleep(0.02)
                await phone.leave(channel)
                n += 1

        async def toggle(phone: Phone) -> None:
            while not stop.is_set():
                for channel in channels:
                    await phone.leave(channel)
                    ids = await phone.join(channel)
                    assert stable <= set(ids) or channel == channels[0], ids
                    listed.append(ids)

        busy = [asyncio.create_task(churn(p, k)) for k, p in enumerate(churners)]
        busy.append(asyncio.create_task(toggle(anna_laptop)))
        await asyncio.sleep(0.5)
        [first] = await rebalance(mine, {"presence-channels": 3}, bus=bus, changed_by="test")
        await asyncio.sleep(0.3)
        second = asyncio.create_task(rebalance(mine, {"presence-channels": 1}, bus=bus, changed_by="test"))
        await asyncio.sleep(0.05)
        await ben.leave(channels[0])
        [last] = await second
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*busy), 60)
        await settle(phones)

        # then every listing during the switch named each member once
        assert (first.before, first.after, last.before, last.after) == (2, 3, 3, 1)
        assert all(len(ids) == len(set(ids)) for ids in listed)
        assert sum(cycles.values()) >= 20, "the churners were not busy during the switch"
        churning = {p.user_id for p in churners}
        for watcher in watchers:
            # nobody heard Anna (always on every channel through her phone) come or go, nor anyone
            # who stayed; Ben's leave was told once
            assert watcher.about(stable | {anna_laptop.user_id}) == [
                (channels[0], "pusher_internal:member_removed", ben.user_id)]
            # and each churner's every join and leave was told exactly once, in order
            for (channel, user_id), times in cycles.items():
                told = [event for c, event, u in watcher.about(churning) if (c, u) == (channel, user_id)]
                assert told == ["pusher_internal:member_added", "pusher_internal:member_removed"] * times, \
                    (channel, user_id, told)
            assert len(watcher.about(churning)) == 2 * sum(cycles.values())

        # and a new subscriber on either worker is listed with exactly who is there, once each
        for edge in edges:
            newcomer = await Phone.open(edge, f"newcomer-{tag}")
            phones.append(newcomer)
            for channel in channels:
                expected = stable - ({ben.user_id} if channel == channels[0] else set()) | {newcomer.user_id}
                ids = await newcomer.join(channel)
                assert sorted(ids) == sorted(expected), channel
                await newcomer.leave(channel)
        registry = PresenceChannels(mine)
        members = await registry.call(APP["id"], channels[1], "members", APP["id"], channels[1])
        assert set(members) == stable
        await registry.layouts.stop()
        layout = await shard_layout.read_layout("presence-channels", mine.presence_channel_shard_prefix,
                                                default_count=2)
        assert (layout.shard_count, layout.pending_count) == (1, None)
    finally:
        for phone in phones:
            await phone.close()
        await bus.close()


async def test_a_crashed_workers_members_are_dropped_by_the_new_shards(db, own_edges, mine, tmp_root):
    # given shards on 3 (the edges started on 2), Zed on a third edge worker and a watcher on
    # edge 0, on one presence channel
    env, edges = own_edges
    tag = secrets.token_hex(3)
    channel = f"presence-crash.{tag}"
    doomed = await asyncio.to_thread(start_edge, env, tmp_root)
    watcher = await Phone.open(edges[0], f"watcher-{tag}")
    zed = await Phone.open(doomed, f"zed-{tag}")
    bus = await connected_bus(mine, "presence-channels-crash-test")
    registry = PresenceChannels(mine)
    try:
        await rebalance(mine, {"presence-channels": 3}, bus=bus, changed_by="test")
        await watcher.join(channel)
        await zed.join(channel)
        await settle([watcher])
        watcher.heard.clear()

        # when that worker is SIGKILLed and the shards are rebalanced back to 2 (a count the edges
        # used before: new actors under the old names) right after, before any shard could
        # notice the worker is silent
        os.kill(doomed.proc.pid, signal.SIGKILL)
        [change] = await rebalance(mine, {"presence-channels": 2}, bus=bus, changed_by="test")
        assert (change.before, change.after) == (3, 2)
        # then the new shards hold Zed for now (handed over, nobody told) ...
        members = await registry.call(APP["id"], channel, "members", APP["id"], channel)
        assert set(members) == {watcher.user_id, zed.user_id}
        assert watcher.heard == []
        # ... and drop them once the worker has been silent three heartbeats, telling the watcher once
        deadline = asyncio.get_running_loop().time() + 6 * HEARTBEAT_S
        while not watcher.heard:
            assert asyncio.get_running_loop().time() < deadline, "the crashed worker's member was never removed"
            await asyncio.sleep(0.1)
        # and the live workers kept heartbeating the new shards: nobody else is dropped
        await asyncio.sleep(2 * HEARTBEAT_S)
        await settle([watcher])
        assert watcher.heard == [(channel, "pusher_internal:member_removed", zed.user_id)]
        members = await registry.call(APP["id"], channel, "members", APP["id"], channel)
        assert set(members) == {watcher.user_id}
        assert await watcher.join(f"presence-after.{tag}") == [watcher.user_id]
    finally:
        await registry.layouts.stop()
        with contextlib.suppress(Exception):
            await zed.close()
        await watcher.close()
        await bus.close()
        doomed.stop()


@pytest_asyncio.fixture(loop_scope="session", scope="module", autouse=True)
async def kill_own_shards(own_edges: tuple[dict[str, str], list[EdgeProcess]], settings: Settings) -> Any:
    yield
    prefix = own_edges[0]["SPOTLESS_PRESENCE_CHANNEL_SHARD_PREFIX"]
    for count in range(1, 6):
        kill_shards(settings, prefix, count)
