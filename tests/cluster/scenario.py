"""Shard actors on a Ray cluster of several nodes, end to end: `python -m tests.cluster.scenario`.

A process joins one Ray cluster for its lifetime, and the pytest process is already in the test
session's, so this runs as its own process (tests/cluster/test_multi_node.py starts it). It:

1. starts a `ray.cluster_utils.Cluster`: a head that offers no shard resource (like the head of
   ray_cluster.yaml) and two worker nodes that offer `spotless_shard`;
2. joins it through `actors.runtime.connect` and creates every shard of every kind through the
   clients the edge uses, with `SPOTLESS_SHARD_RESOURCE=spotless_shard`;
3. checks that SPREAD put them on both workers and that the resource kept them off the head;
4. writes state through the storage actions and the shards (a cleaner's service area, a chat
   message, a presence heartbeat), each routed to a shard on the node it will kill;
5. runs `spotless actors status` against the cluster and checks that it names both nodes and
   what each shard holds (and again after step 8, when it must name the new layout's shards);
6. kills that node (its Ray processes and its shards' processes, as a lost machine does) and
   sends a search, an online lookup and a chat message to its shards while it is down;
7. waits until its shards are alive on the surviving worker, checks that those requests were
   answered (Ray retried them on the restarted shards), and that the shards still answer from
   what PostgreSQL holds: the search finds the area, a retried chat message gets its first seq
   and the next message the next seq, the cleaner is still online and heartbeats again;
8. adds a replacement node and runs `spotless actors rebalance`'s `rebalance()` on the cluster
   (conversations 2 -> 3, spatial 2 -> 1): the new shards spread over both nodes, and search,
   chat and presence answer through the new layout; then runs the chat live-resharding scenario
   of tests/actors/rebalance_scenarios.py (messages streaming during the change) on the cluster;
9. shuts the cluster down.

It needs DATABASE_URL (migrated) and NATS_URL; it writes only new rows, under shard name
prefixes of its own. Each step prints a line with the time since the start; a failure raises.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SHARD_RESOURCE = "spotless_shard"
SHARD_UNITS_PER_NODE = 10  # one worker alone holds every shard: the survivor takes them all
RUN = secrets.token_hex(3)
STARTED = time.monotonic()

# The settings of this run, exported before anything reads them, so the shards (which get the
# Settings object) and `spotless actors status` (a process of its own) agree on every name.
SCENARIO_ENV = {
    "SPOTLESS_SHARD_RESOURCE": SHARD_RESOURCE,
    "SPOTLESS_SHARD_MEMORY_MB": "64",
    "SPOTLESS_SHARD_SCHEDULING": "SPREAD",
    "SPOTLESS_SPATIAL_SHARDS": "2",
    "SPOTLESS_PRESENCE_SHARDS": "2",
    "SPOTLESS_CONVERSATION_SHARDS": "2",
    "SPOTLESS_PRESENCE_CHANNEL_SHARDS": "1",
    "SPOTLESS_SPATIAL_SHARD_PREFIX": f"cl{RUN}-spatial",
    "SPOTLESS_PRESENCE_SHARD_PREFIX": f"cl{RUN}-presence",
    "SPOTLESS_CONVERSATION_SHARD_PREFIX": f"cl{RUN}-conversations",
    "SPOTLESS_PRESENCE_CHANNEL_SHARD_PREFIX": f"cl{RUN}-presence-channels",
    "SPOTLESS_RAY_NAMESPACE": f"spotless-cluster-{RUN}",
    "SPOTLESS_PRESENCE_TIMEOUT_S": "600",
    "SPOTLESS_REBALANCE_GRACE_S": "0.5",
    "SPOTLESS_DATABASE_POOL_MAX": "2",
}

# A lost node is noticed within ~2 s instead of Ray's default ~30 s.
FAST_NODE_FAILURE = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                     "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


async def eventually(what: str, check: Callable[[], Awaitable[Any]], *, within_s: float) -> Any:
    """Poll `check` until it returns something true; fail naming `what` after `within_s`."""
    deadline = time.monotonic() + within_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what}: not within {within_s:.0f} s (last: {last!r})")


def square(lat: float, lng: float, half_deg: float = 0.05) -> dict[str, Any]:
    ring = [[lng - half_deg, lat - half_deg], [lng + half_deg, lat - half_deg],
            [lng + half_deg, lat + half_deg], [lng - half_deg, lat + half_deg], [lng - half_deg, lat - half_deg]]
    return {"type": "Polygon", "coordinates": [ring]}


def run_status() -> dict[str, list[str]]:
    """`spotless actors status` as an operator runs it: its shard rows by name, split in columns."""
    done = subprocess.run([sys.executable, "-m", "cli.main", "actors", "status"], cwd=ROOT, env=dict(os.environ),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    print(done.stdout, flush=True)
    assert done.returncode == 0, f"spotless actors status failed ({done.returncode}): {done.stderr}"
    lines = done.stdout.splitlines()
    assert lines[-1].endswith("MiB resident"), lines[-1]
    return {line.split()[1]: line.split() for line in lines[1:-1]}


@dataclass
class Stack:
    """What an edge worker holds: settings, the layout it follows, and a client per shard kind."""

    settings: Any
    bus: Any
    layouts: Any
    spatial: Any
    presence: Any
    chat: Any

    async def placement(self, counts: dict[str, int] | None = None) -> dict[str, Any]:
        """Every shard's status row by name, each alive."""
        from actors.status import shard_status

        rows = {row.name: row for row in await shard_status(self.settings, counts=counts, timeout_s=60)}
        assert all(row.state == "alive" for row in rows.values()), rows
        return rows


@dataclass
class World:
    """The entities the scenario follows, and what it expects of them."""

    cleaner_id: str
    client_id: str
    lat: float
    lng: float
    conversation: str
    first_message: dict[str, Any]
    last_seq: int = 1

    async def answers(self, stack: Stack, *, label: str) -> None:
        """Search, chat and presence all answer correctly through `stack`."""
        found = await stack.spatial.find(self.lat, self.lng)
        assert [c for c, _ in found] == [self.cleaner_id], found
        online = await stack.presence.online([self.cleaner_id])
        assert online == {self.cleaner_id: True}, f"the presence shard forgot the cleaner: {online}"
        await stack.presence.heartbeat(self.cleaner_id, self.lat + 0.01, self.lng)
        assert await stack.presence.online([self.cleaner_id]) == {self.cleaner_id: True}
        replay, created = await stack.chat.send(self.conversation, sender_id=self.client_id,
                                                client_msg_id="m1", body="hello")
        assert not created and replay["seq"] == 1 and replay["id"] == self.first_message["id"], replay
        self.last_seq += 1
        message, created = await stack.chat.send(self.conversation, sender_id=self.cleaner_id,
                                                 client_msg_id=f"m{self.last_seq}", body="on my way")
        assert created and message["seq"] == self.last_seq, message
        say(f"{label}: search finds {self.cleaner_id[:8]}, cleaner online, retried message keeps seq 1, "
            f"next message seq {message['seq']}")


async def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    from actors.runtime import LOCAL_RAY_SYSTEM_CONFIG

    os.environ.update(SCENARIO_ENV)
    os.environ.pop("RAY_ADDRESS", None)
    # The cluster records its address under the Ray temp dir, where any `ray.init()` on this
    # machine would find and join it: keep it in a dir of this run's own.
    own_tmpdir = None if os.environ.get("RAY_TMPDIR") else tempfile.mkdtemp(prefix="spl-ray-", dir="/tmp")
    if own_tmpdir:
        os.environ["RAY_TMPDIR"] = own_tmpdir
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        "_system_config": {**FAST_NODE_FAILURE, **LOCAL_RAY_SYSTEM_CONFIG}})
    try:
        workers = [cluster.add_node(num_cpus=0, resources={SHARD_RESOURCE: SHARD_UNITS_PER_NODE})
                   for _ in range(2)]
        say(f"cluster up at {cluster.address}: head {cluster.head_node.node_id[:8]} (no {SHARD_RESOURCE}), "
            f"workers {', '.join(w.node_id[:8] for w in workers)} ({SHARD_UNITS_PER_NODE} {SHARD_RESOURCE} each)")
        os.environ["RAY_ADDRESS"] = cluster.address
        await on_the_cluster(cluster, workers)
    finally:
        ray.shutdown()
        cluster.shutdown()
        if own_tmpdir:
            shutil.rmtree(own_tmpdir, ignore_errors=True)
        say("cluster shut down")


async def on_the_cluster(cluster: Any, workers: list[Any]) -> None:
    from actors import runtime
    from actors.clients import PresenceClient, SpatialClient
    from actors.conversations import ConversationRouter
    from actors.layout import Layouts
    from actors.presence_channels import presence_channel_shard
    from core.settings import Settings
    from storage.bus import Bus
    from storage.db import close_database, open_database

    settings = Settings()
    assert settings.ray_address == cluster.address and settings.shard_resource == SHARD_RESOURCE
    runtime.connect(settings)
    await open_database(settings)
    bus = Bus(settings.nats_url, name=f"spotless-cluster-scenario-{RUN}")
    bus.start()
    assert await bus.wait_connected(10), "NATS unreachable"
    layouts = Layouts(settings)
    layouts.follow(bus)
    stack = Stack(settings, bus, layouts, SpatialClient(settings, layouts=layouts),
                  PresenceClient(settings, layouts=layouts), ConversationRouter(settings, layouts=layouts))
    try:
        # when every shard of every kind is created through the factories the edge uses
        for kind, prefix in (("spatial", settings.spatial_shard_prefix),
                             ("presence", settings.presence_shard_prefix),
                             ("conversations", settings.conversation_shard_prefix)):
            await layouts.get(kind, prefix)  # the first reader writes the layout: the settings' counts
        assert len(stack.spatial.shards) + len(stack.presence.shards) + len(stack.chat.shards) == 6
        presence_channel_shard(settings, 0)
        rows = await stack.placement()
        nodes = {name: row.facts["node_id"] for name, row in rows.items()}
        say("placed: " + ", ".join(f"{name}@{node[:8]}" for name, node in nodes.items()))
        # then SPREAD put them on both workers and the shard resource kept them off the head
        worker_ids = {w.node_id for w in workers}
        assert set(nodes.values()) == worker_ids, f"shards on {set(nodes.values())}, workers {worker_ids}"

        victim = max(sorted(workers, key=lambda w: w.node_id),
                     key=lambda w: len(kinds_on(stack, nodes, w.node_id)))
        on_victim = {name for name, node in nodes.items() if node == victim.node_id}
        say(f"node to kill: {victim.node_id[:8]}, hosting {sorted(on_victim)}")
        world = await make_world(stack, nodes, victim.node_id)

        # when an operator asks for the status, it names both workers and what each shard holds
        status = run_status()
        assert set(status) == set(nodes) and all(row[2] == "alive" for row in status.values()), status
        assert {row[-1] for row in status.values()} == worker_ids, status
        assert all(int(status[name][3]) >= 1 for name in owners(stack, world)), status
        say(f"status names {len({row[-1] for row in status.values()})} nodes for {len(status)} shards")

        # when that node is lost with everything on it
        await lose_node(stack, cluster, victim, {name: rows[name].facts["pid"] for name in on_victim}, world)
        survivor = next(iter(worker_ids - {victim.node_id}))
        # then its shards come back on the surviving worker and answer from PostgreSQL
        await world.answers(stack, label="after the loss")
        rows = await stack.placement()
        assert {row.facts["node_id"] for row in rows.values()} == {survivor}, rows
        say("every shard alive on the surviving node")

        await rebalance_on_the_cluster(stack, cluster, world)
    finally:
        await layouts.stop()
        await bus.close()
        await close_database()


def kinds_on(stack: Stack, nodes: dict[str, str], node: str) -> set[str]:
    """The kinds (of the three with entities) that have a shard on `node`."""
    from actors.status import shard_names

    return {kind for kind, name in shard_names(stack.settings)
            if kind in ("spatial", "presence", "conversations") and nodes[name] == node}


def owners(stack: Stack, world: World) -> list[str]:
    """The names of the shards that own the world's area, cleaner and conversation."""
    from actors.runtime import shard_name

    s = stack.settings
    spatial_count = stack.layouts.last_seen("spatial", s.spatial_shard_prefix).shard_count
    presence_count = stack.layouts.last_seen("presence", s.presence_shard_prefix).shard_count
    chat_count = stack.layouts.last_seen("conversations", s.conversation_shard_prefix).shard_count
    return [shard_name(s.spatial_shard_prefix, stack.spatial.shard_of(world.lat, world.lng), spatial_count),
            shard_name(s.presence_shard_prefix, stack.presence.shard_of(world.cleaner_id), presence_count),
            shard_name(s.conversation_shard_prefix, stack.chat.shard_of(world.conversation), chat_count)]


async def make_world(stack: Stack, nodes: dict[str, str], victim: str) -> World:
    """A cleaner with a service area, a client, a booking (its conversation) with one message,
    a heartbeat: through the storage actions and the shards, each routed, where the node to be
    killed hosts a shard of its kind, to that shard (ids are random: make more until one is)."""
    from actors.runtime import shard_name
    from storage import bookings
    from storage.service_areas import set_service_area
    from tests.storage.test_bookings import bookable_cleaner, make_user, request_for, tomorrow_at

    s = stack.settings
    on_victim = {name for name, node in nodes.items() if node == victim}
    kinds = kinds_on(stack, nodes, victim)

    def doomed(prefix: str, shard: int, count: int) -> bool:
        return shard_name(prefix, shard, count) in on_victim

    # Far from every other test's areas (the session's database is shared), so that the search
    # finds exactly this cleaner.
    points = [(-45.5, 168.0 + 0.5 * k) for k in range(24)]
    lat, lng = next((p for p in points if doomed(s.spatial_shard_prefix, stack.spatial.shard_of(*p), 2)),
                    points[0])
    cleaner = await bookable_cleaner(s)
    for _ in range(16):
        if "presence" not in kinds or doomed(s.presence_shard_prefix, stack.presence.shard_of(str(cleaner.id)), 2):
            break
        cleaner = await bookable_cleaner(s)
    _, change = await set_service_area(actor=cleaner, geojson=square(lat, lng), settings=s)
    await stack.spatial.apply(change)
    client = await make_user(s, "client")
    for day in range(1, 17):
        booking = await bookings.create_booking(actor=client, settings=s,
                                                request=request_for(cleaner, tomorrow_at(9, days=day),
                                                                    lat=lat, lng=lng))
        if "conversations" not in kinds or doomed(s.conversation_shard_prefix,
                                                  stack.chat.shard_of(str(booking.id)), 2):
            break
    first, created = await stack.chat.send(str(booking.id), sender_id=str(client.id), client_msg_id="m1",
                                           body="hello")
    assert created and first["seq"] == 1, first
    world = World(str(cleaner.id), str(client.id), lat, lng, str(booking.id), first)
    routed = owners(stack, world)
    say(f"entities on {routed}; the node to kill hosts {sorted(kinds)}")
    # SPREAD gives each worker a shard of every kind; wherever it did, the entity is on the victim
    assert kinds, f"the node to kill hosts no spatial, presence or conversation shard: {nodes}"
    assert all(name in on_victim for name, kind in zip(routed, ("spatial", "presence", "conversations"),
                                                          strict=True) if kind in kinds), (routed, on_victim)

    assert [c for c, _ in await stack.spatial.find(lat, lng)] == [world.cleaner_id]
    await stack.presence.heartbeat(world.cleaner_id, lat, lng)
    assert await stack.presence.online([world.cleaner_id]) == {world.cleaner_id: True}
    presence_actor = stack.presence.shards[stack.presence.shard_of(world.cleaner_id)]
    assert await presence_actor.flush.remote() >= 1  # last_seen in PostgreSQL, as the flush loop does
    say(f"before: search finds {world.cleaner_id[:8]}, chat seq 1, cleaner online")
    return world


async def lose_node(stack: Stack, cluster: Any, victim: Any, pids: dict[str, int], world: World) -> None:
    """Kill a worker node and the shard processes on it; requests keep arriving meanwhile. Wait
    until those shards are alive on another node and the requests are answered."""
    cluster.remove_node(victim, allow_graceful=False)
    for pid in pids.values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # gone with its raylet
    say(f"killed node {victim.node_id[:8]} and shard processes {sorted(pids.values())}")
    during = asyncio.gather(
        stack.spatial.find(world.lat, world.lng), stack.presence.online([world.cleaner_id]),
        stack.chat.send(world.conversation, sender_id=world.client_id, client_msg_id="m-during",
                        body="are you there?"))

    async def back() -> dict[str, Any] | None:
        from actors.status import shard_status

        rows = {row.name: row for row in await shard_status(stack.settings, timeout_s=5)}
        moved = [rows[name] for name in pids]
        if all(r.state == "alive" and r.facts["node_id"] != victim.node_id for r in moved):
            return {r.name: r.facts for r in moved}
        return None

    facts = await eventually("the lost node's shards alive elsewhere", back, within_s=90)
    assert all(facts[name]["pid"] != pid for name, pid in pids.items()), facts
    say(f"back: {sorted(facts)} on {sorted({f['node_id'][:8] for f in facts.values()})}")
    # Ray retried them on the restarted shards (max_task_retries): answered, nothing doubled
    found, online, (message, created) = await asyncio.wait_for(during, 60)
    assert [c for c, _ in found] == [world.cleaner_id] and online == {world.cleaner_id: True}, (found, online)
    assert created and message["seq"] == world.last_seq + 1, message
    world.last_seq += 1
    say(f"requests sent while the node was down: answered once it was back (chat seq {message['seq']})")


async def rebalance_on_the_cluster(stack: Stack, cluster: Any, world: World) -> None:
    """A replacement node joins; `spotless actors rebalance` moves conversations to 3 shards and
    spatial to 1: the new shards spread over both nodes and every entity answers through them.
    Then the chat scenario of tests/actors/rebalance_scenarios.py, on two nodes."""
    from actors.rebalance import rebalance

    replacement = cluster.add_node(num_cpus=0, resources={SHARD_RESOURCE: SHARD_UNITS_PER_NODE})
    say(f"replacement node {replacement.node_id[:8]} joined")
    changes = await rebalance(stack.settings, {"conversations": 3, "spatial": 1}, bus=stack.bus,
                              changed_by="cluster scenario")
    say("rebalanced: " + "; ".join(change.describe() for change in changes))
    counts = {"spatial": 1, "presence": 2, "conversations": 3}
    rows = await stack.placement(counts)
    chat = {row.facts["node_id"] for row in rows.values() if row.kind == "conversations"}
    assert len(chat) == 2 and replacement.node_id in chat, f"new conversation shards on {chat}"
    await world.answers(stack, label="after the rebalance")
    status = run_status()
    assert set(status) == set(rows) and all(row[2] == "alive" for row in status.values()), status
    say(f"status after the rebalance names {len({row[-1] for row in status.values()})} nodes")
    # and the live-resharding scenario of chat (senders streaming through two routers while the
    # shards change, then PostgreSQL checked against every acknowledgement) holds across nodes.
    # Only this one of tests/actors/rebalance_scenarios.py: its spatial and presence scenarios
    # would start ten more shard processes here, and run on the session's Ray already.
    from tests.actors.rebalance_scenarios import conversations_during_rebalance

    chat = await conversations_during_rebalance(stack.settings, counts=(2, 3))
    say(f"rebalance scenario on the cluster: conversations {chat.steps}, {chat.acked} acknowledged, "
        f"{chat.replays} replays, seqs gapless in {len(chat.per_conversation)} conversations")


if __name__ == "__main__":
    asyncio.run(main())
    say("scenario passed")
