"""Live resharding scenarios: traffic keeps flowing while `actors.rebalance.rebalance` changes
shard counts, and afterwards PostgreSQL and the shards hold exactly what was acknowledged.

Each scenario is a plain async function of the settings, so it runs from pytest
(tests/actors/test_rebalance.py, against the session's local Ray) and from a script against any
cluster (the multi-node harness):

    RAY_ADDRESS=... DATABASE_URL=... NATS_URL=... python -m tests.actors.rebalance_scenarios

Every scenario uses shard-name prefixes of its own, so the cluster's default shards are never
touched, and kills its shards at the end. They need the database open (Tortoise) and Ray
connected; `main()` does both.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import ray
import shapely
from tortoise import connections

from actors.clients import PresenceClient, SpatialClient
from actors.conversations import ConversationRouter
from actors.layout import Layouts
from actors.rebalance import kill_shards, rebalance
from actors.runtime import shard_name
from core.clock import utcnow
from core.errors import Conflict, Unavailable
from core.ids import new_id
from core.settings import Settings
from storage.accounts import create_user
from storage.bus import Bus
from storage.models import User
from storage.service_areas import set_service_area
from storage.supply import get_profile

PASSWORD = "correct horse battery staple"
BY = "tests.rebalance"


def own_settings(settings: Settings, **changes: Any) -> Settings:
    """The session's settings with shard prefixes of this run only and short rebalance timers."""
    tag = secrets.token_hex(3)
    return settings.model_copy(update={
        "spatial_shard_prefix": f"rb-spatial-{tag}", "presence_shard_prefix": f"rb-presence-{tag}",
        "conversation_shard_prefix": f"rb-conv-{tag}", "presence_channel_shard_prefix": f"rb-pc-{tag}",
        "rebalance_grace_s": 0.5,
        "shard_layout_wait_s": 20.0, **changes})


async def new_user(settings: Settings, role: str) -> str:
    user = await create_user(email=f"rb.{role}.{secrets.token_hex(5)}@example.com", password=PASSWORD,
                             name=f"Rebalance {role}", role=role, settings=settings)
    if role == "cleaner":
        await get_profile(actor=user)  # the profile that presence rows hang off
    return str(user.id)


async def new_conversation(settings: Settings) -> tuple[str, str, str]:
    """(conversation id, client id, cleaner id): a booking's conversation. The bookings issue's
    actions refuse to jump states, so the booking row is written as tests/realtime does."""
    client_id, cleaner_id = await new_user(settings, "client"), await new_user(settings, "cleaner")
    booking_id, starts = str(new_id()), utcnow() + timedelta(days=2)
    await connections.get("default").execute_query(
        "INSERT INTO bookings (id, client_id, cleaner_id, service_id, state, starts_at, ends_at) "
        "VALUES ($1, $2, $3, 'standard', 'accepted', $4, $5)",
        [booking_id, client_id, cleaner_id, starts, starts + timedelta(hours=2)])
    return booking_id, client_id, cleaner_id


async def connected_bus(settings: Settings, name: str) -> Bus:
    bus = Bus(settings.nats_url or "nats://127.0.0.1:4222", name=name)
    bus.start()
    assert await bus.wait_connected(10), "NATS not reachable"
    return bus


async def wait_until(condition: Any, *, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await condition():
        assert time.monotonic() < deadline, f"not within {within_s}s: {what}"
        await asyncio.sleep(0.05)


def kill_sets(settings: Settings, prefix: str, counts: list[int]) -> None:
    for count in set(counts):
        kill_shards(settings, prefix, count)


# --- conversations ---


@dataclass
class ChatOutcome:
    steps: list[tuple[int, int]]
    acked: int = 0
    retryable_answers: int = 0  # Conflict(retry) / Unavailable: the app sends the same message again
    replays: int = 0  # retries of acknowledged sends, answered as a replay with the same seq
    first_sends_replayed: int = 0  # written, but the answer was lost: the app's resend was the replay
    per_conversation: dict[str, list[int]] = field(default_factory=dict)


async def conversations_during_rebalance(settings: Settings, *, counts: tuple[int, ...] = (2, 3, 1),
                                         conversations: int = 6, settle_s: float = 0.4) -> ChatOutcome:
    """Senders keep sending into several conversations, through two routers (one follows NATS
    announcements, one learns only from "moved" answers), while the conversation shards go from
    counts[0] to each next count. Returns what happened; asserts nothing was lost or forked."""
    s = own_settings(settings, conversation_shards=counts[0])
    bus = await connected_bus(s, "rebalance-scenario")
    following, unaware = Layouts(s), Layouts(s)
    following.follow(bus)
    routers = [ConversationRouter(s, layouts=following), ConversationRouter(s, layouts=unaware)]
    talks = [await new_conversation(s) for _ in range(conversations)]
    outcome = ChatOutcome(steps=list(zip(counts, counts[1:], strict=False)))
    acked: dict[tuple[str, str, str], int] = {}  # (conversation, sender, client_msg_id) -> seq
    stop = asyncio.Event()

    async def send_once(router: ConversationRouter, cid: str, sender: str, msg_id: str) -> tuple[dict[str, Any], bool]:
        # What an app does: the same client_msg_id again until it is acknowledged.
        while True:
            try:
                return await router.send(cid, sender_id=sender, client_msg_id=msg_id, body=f"hello {msg_id}")
            except (Conflict, Unavailable) as exc:
                assert isinstance(exc, Unavailable) or exc.code == "retry", exc
                outcome.retryable_answers += 1
                await asyncio.sleep(0.05)

    async def sender(number: int, cid: str, client_id: str, cleaner_id: str) -> None:
        n = 0
        while not stop.is_set():
            who = client_id if n % 2 else cleaner_id
            msg_id = f"m-{number}-{n}"
            message, created = await send_once(routers[n % 2], cid, who, msg_id)
            outcome.first_sends_replayed += not created
            acked[(cid, who, msg_id)] = message["seq"]
            if n % 7 == 3:  # a retry of a message already acknowledged: the same seq, not a copy
                again, created = await send_once(routers[(n + 1) % 2], cid, who, msg_id)
                assert not created and again["seq"] == message["seq"]
                outcome.replays += 1
            n += 1

    senders = [asyncio.create_task(sender(i, *talk)) for i, talk in enumerate(talks)]
    try:
        await asyncio.sleep(settle_s)
        for old, count in zip(counts, counts[1:], strict=False):
            before = len(acked)
            [change] = await rebalance(s, {"conversations": count}, bus=bus, changed_by=BY)
            assert (change.before, change.after) == (old, count)
            for shard in range(old):  # the old shards are gone, not merely idle
                with contextlib.suppress(ValueError):
                    ray.get_actor(shard_name(s.conversation_shard_prefix, shard, old), namespace=s.ray_namespace)
                    raise AssertionError(f"shard {shard} of {old} outlived the rebalance")
            await asyncio.sleep(settle_s)
            assert len(acked) > before, "no send was acknowledged across the rebalance"
        stop.set()
        await asyncio.wait_for(asyncio.gather(*senders), 60)
    finally:
        stop.set()
        for task in senders:
            task.cancel()
        await following.stop()
        await bus.close()
        kill_sets(s, s.conversation_shard_prefix, list(counts))

    rows = await connections.get("default").execute_query_dict(
        "SELECT conversation_id::text AS cid, sender_id::text AS sender, client_msg_id, seq "
        "FROM chat_messages WHERE conversation_id = ANY($1::uuid[]) ORDER BY conversation_id, seq",
        [[t[0] for t in talks]])
    stored = {(r["cid"], r["sender"], r["client_msg_id"]): r["seq"] for r in rows}
    assert len(stored) == len(rows), "a message is stored twice"
    assert stored == acked, "what PostgreSQL holds is not exactly what was acknowledged"
    for cid, *_ in talks:
        seqs = [r["seq"] for r in rows if r["cid"] == cid]
        assert seqs == list(range(1, len(seqs) + 1)), f"seqs of {cid} have a gap or a fork"
        outcome.per_conversation[cid] = seqs
    assert following.last_seen("conversations", s.conversation_shard_prefix).shard_count == counts[-1]
    assert unaware.last_seen("conversations", s.conversation_shard_prefix).shard_count == counts[-1]
    outcome.acked = len(acked)
    return outcome


# --- spatial ---


def _box(lat0: float, lng0: float, lat1: float, lng1: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[lng0, lat0], [lng1, lat0], [lng1, lat1], [lng0, lat1],
                                                [lng0, lat0]]]}


async def _covering(points: list[tuple[float, float]], ids: set[str]) -> list[set[str]]:
    """Brute force: which of `ids` have an area covering each point, straight from PostgreSQL."""
    rows = await connections.get("default").execute_query_dict(
        "SELECT cleaner_id::text AS id, geojson::text AS geojson FROM service_areas "
        "WHERE cleaner_id = ANY($1::uuid[])", [sorted(ids)])
    geoms = shapely.from_geojson([r["geojson"] for r in rows])
    pts = shapely.points([p[1] for p in points], [p[0] for p in points])
    hits = shapely.intersects(np.asarray(geoms)[:, None], pts[None, :])
    return [{rows[g]["id"] for g in np.flatnonzero(hits[:, i])} for i in range(len(points))]


async def _found(client: SpatialClient, points: list[tuple[float, float]], ids: set[str]) -> list[set[str]]:
    found = await asyncio.gather(*(client.find(lat, lng) for lat, lng in points))
    return [{cid for cid, _ in hits} & ids for hits in found]


@dataclass
class SpatialOutcome:
    rounds_during: int
    caught_up: int


async def spatial_during_rebalance(settings: Settings, *, before: int = 2, after: int = 3,
                                   areas: int = 30, seed: int = 20261125) -> SpatialOutcome:
    """Searches run through a client that follows the layout and one that does not, while the
    spatial shards go from `before` to `after`; an area saved mid-change by a process still on the
    old layout is found afterwards. Asserts every answer equals the brute-force one."""
    rng = random.Random(seed)
    s = own_settings(settings, spatial_shards=before, spatial_rebuild_delta=8, rebalance_grace_s=1.0)
    # Around 12°N 21°E, far from the other tests' areas; boxes cross the 0.5° cell lines.
    ids: set[str] = set()
    for _ in range(areas):
        lat, lng = rng.uniform(11.0, 12.8), rng.uniform(20.0, 21.8)
        cid = await new_user(s, "cleaner")
        await set_service_area(actor=await User.get(id=cid), geojson=_box(lat, lng, lat + rng.uniform(0.1, 0.6),
                                                                          lng + rng.uniform(0.1, 0.6)),
                               settings=s)
        ids.add(cid)
    points = [(rng.uniform(10.9, 13.5), rng.uniform(19.9, 22.5)) for _ in range(300)]
    points += [(lat, lng) for lat in (11.0, 11.5, 12.0, 12.5) for lng in (20.0, 20.5, 21.0, 21.5)]
    expected = await _covering(points, ids)
    assert sum(len(e) for e in expected) > 100

    bus = await connected_bus(s, "rebalance-scenario-spatial")
    following, unaware = Layouts(s), Layouts(s)
    following.follow(bus)
    searcher, stale = SpatialClient(s, layouts=following), SpatialClient(s, layouts=unaware)
    assert await _found(searcher, points, ids) == expected
    assert await _found(stale, points, ids) == expected
    rounds = 0
    stop = asyncio.Event()

    async def keep_searching(client: SpatialClient) -> None:
        nonlocal rounds
        while not stop.is_set():
            assert await _found(client, points, ids) == expected, "a search during the rebalance was wrong"
            rounds += 1

    late_id = await new_user(s, "cleaner")
    late_point = (12.95, 21.95)
    searches = [asyncio.create_task(keep_searching(c)) for c in (searcher, stale)]
    change = asyncio.create_task(rebalance(s, {"spatial": after}, bus=bus, changed_by=BY))
    try:
        # when the new shards have loaded, a cleaner saves an area through a process that still
        # routes by the old layout (its change reaches only the old shards)
        new_shard = f"{s.spatial_shard_prefix}-0-of-{after}"

        async def new_set_loaded() -> bool:
            try:
                await ray.get_actor(new_shard, namespace=s.ray_namespace).stats.remote()
                return True
            except ValueError:
                return False

        await wait_until(new_set_loaded, within_s=60, what="the new spatial shards loaded")
        _, late = await set_service_area(actor=await User.get(id=late_id),
                                         geojson=_box(12.9, 21.9, 13.0, 22.0), settings=s)
        await stale.apply(late)
        [result] = await asyncio.wait_for(change, 120)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*searches), 60)
        # then both clients find the late area at its point, and every other answer still holds
        for client in (searcher, stale):
            assert late_id in {cid for cid, _ in await client.find(*late_point)}
            assert await _found(client, points, ids) == expected
        assert unaware.last_seen("spatial", s.spatial_shard_prefix).shard_count == after
    finally:
        stop.set()
        for task in [*searches, change]:
            task.cancel()
        await following.stop()
        await bus.close()
        kill_sets(s, s.spatial_shard_prefix, [before, after])
    return SpatialOutcome(rounds, result.handed_over)


# --- presence ---


@dataclass
class PresenceOutcome:
    online_before: int
    beats_during: int
    written_on_retire: int


async def presence_during_rebalance(settings: Settings, *, before: int = 2, after: int = 3,
                                    cleaners: int = 8) -> PresenceOutcome:
    """Cleaners online before the presence shards go from `before` to `after` are online after
    it; heartbeats sent during it count; last_seen reached PostgreSQL even though the flush loop
    never ran (the retiring shards wrote it)."""
    s = own_settings(settings, presence_shards=before, presence_timeout_s=60.0, presence_flush_s=3600.0,
                     presence_notify_s=3600.0)
    early = [await new_user(s, "cleaner") for _ in range(cleaners)]
    during = [await new_user(s, "cleaner") for _ in range(cleaners)]
    bus = await connected_bus(s, "rebalance-scenario-presence")
    following, unaware = Layouts(s), Layouts(s)
    following.follow(bus)
    client, stale = PresenceClient(s, layouts=following), PresenceClient(s, layouts=unaware)
    try:
        await asyncio.gather(*(client.heartbeat(cid, 51.5, -0.1) for cid in early))
        assert all((await stale.online(early)).values())
        beats = 0
        stop = asyncio.Event()

        async def keep_beating() -> None:
            nonlocal beats
            while not stop.is_set():
                for number, cid in enumerate(during):
                    await (client if number % 2 else stale).heartbeat(cid, 51.6, -0.2)
                    beats += 1

        beating = asyncio.create_task(keep_beating())
        await asyncio.sleep(0.2)
        [change] = await rebalance(s, {"presence": after}, bus=bus, changed_by=BY)
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(beating, 30)
        for viewer in (client, stale):
            assert await viewer.online(early + during) == dict.fromkeys(early + during, True)
        rows = await connections.get("default").execute_query_dict(
            "SELECT count(*) AS n FROM cleaner_presence WHERE cleaner_id = ANY($1::uuid[])", [early])
        assert rows[0]["n"] == len(early), "the retiring shards did not write last_seen"
        assert unaware.last_seen("presence", s.presence_shard_prefix).shard_count == after
    finally:
        await following.stop()
        await bus.close()
        kill_sets(s, s.presence_shard_prefix, [before, after])
    return PresenceOutcome(len(early), beats, change.handed_over)


async def run_all(settings: Settings) -> None:
    """Every scenario, printing what each did (the multi-node harness calls this)."""
    chat = await conversations_during_rebalance(settings)
    print(f"conversations {chat.steps}: {chat.acked} acknowledged, {chat.replays} replays, "
          f"{chat.retryable_answers} retryable answers; seqs gapless in {len(chat.per_conversation)} conversations")
    spatial = await spatial_during_rebalance(settings)
    print(f"spatial: {spatial.rounds_during} search rounds during the change, all brute-force correct; "
          f"{spatial.caught_up} changes caught up")
    presence = await presence_during_rebalance(settings)
    print(f"presence: {presence.online_before} online before stayed online, {presence.beats_during} heartbeats "
          f"during; {presence.written_on_retire} written by the retiring shards")


def main() -> None:
    from actors.runtime import connect, disconnect
    from core.settings import get_settings
    from storage.db import close_database, open_database

    settings = get_settings()
    if not settings.ray_address or not settings.database_url:
        sys.exit("set RAY_ADDRESS and DATABASE_URL (and NATS_URL)")

    async def run() -> None:
        await open_database(settings)
        try:
            await run_all(settings)
        finally:
            await close_database()

    connect(settings)
    try:
        asyncio.run(run())
    finally:
        with contextlib.suppress(Exception):
            disconnect()


if __name__ == "__main__":
    main()

