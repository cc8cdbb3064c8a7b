"""Presence shards: heartbeats keep a cleaner online, silence makes them offline, restarts remember."""

from __future__ import annotations

import asyncio
import time

import pytest
import ray
from tortoise import connections

from actors.clients import PresenceClient
from core.settings import Settings
from tests.actors.conftest import cleaner_with_area

pytestmark = pytest.mark.usefixtures("db")

AREA = {"type": "Polygon", "coordinates": [[[-0.2, 51.4], [0.0, 51.4], [0.0, 51.6], [-0.2, 51.6], [-0.2, 51.4]]]}


def presence_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"presence_shards": 3, "presence_timeout_s": 1.5,
                                       "presence_flush_s": 0.2, **changes})


async def test_a_cleaner_without_heartbeats_goes_offline_by_itself(settings: Settings, shard_prefix: str) -> None:
    # given a cleaner who sent a heartbeat
    client = PresenceClient(presence_settings(settings), prefix=shard_prefix)
    user, _ = await cleaner_with_area(settings, AREA)
    cid = str(user.id)
    await client.heartbeat(cid, 51.5, -0.1)
    assert await client.online([cid, "someone-else"]) == {cid: True, "someone-else": False}

    # when heartbeats keep coming, the cleaner stays online past the timeout
    for _ in range(4):
        await asyncio.sleep(0.5)
        await client.heartbeat(cid, 51.5, -0.1)
    assert (await client.online([cid]))[cid]

    # when they stop, then after the timeout the cleaner is offline without anyone saying so
    await asyncio.sleep(1.7)
    assert not (await client.online([cid]))[cid]


async def test_heartbeats_are_written_in_batches_and_survive_a_restart(settings: Settings,
                                                                       shard_prefix: str) -> None:
    # given many cleaners heartbeating at once, with a long timeout
    client = PresenceClient(presence_settings(settings, presence_timeout_s=60.0), prefix=shard_prefix)
    users = [(await cleaner_with_area(settings, AREA))[0] for _ in range(12)]
    ids = [str(u.id) for u in users]
    await asyncio.gather(*(client.heartbeat(cid, 51.5, -0.1 + i / 100) for i, cid in enumerate(ids)))
    assert client.coalescer.batches <= 2 * len(client.shards)

    # when the flush loop has run, last_seen is in PostgreSQL
    deadline = time.monotonic() + 10
    db = connections.get("default")
    while True:
        rows = await db.execute_query_dict(
            "SELECT cleaner_id::text AS id, lng FROM cleaner_presence WHERE cleaner_id = ANY($1::uuid[])", [ids])
        if len(rows) == len(ids):
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert {r["id"]: r["lng"] for r in rows}[ids[3]] == pytest.approx(-0.07)

    # when every presence shard is killed and restarted by Ray
    pids = await asyncio.gather(*(s.pid.remote() for s in client.shards))
    for shard in client.shards:
        ray.kill(shard, no_restart=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            now = await asyncio.gather(*(s.pid.remote() for s in client.shards))
            if not set(now) & set(pids):
                break
        except ray.exceptions.RayActorError:
            pass
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)

    # then the restarted shards still know who is online
    assert await client.online(ids) == dict.fromkeys(ids, True)
