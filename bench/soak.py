"""Benchmark: a soak — search, booking, chat and presence at once, with and without a fault.

Starts `spotless dev` (on a fresh database of DATABASE_URL's server or an embedded PostgreSQL,
NATS_URL or an embedded nats-server, and a local Ray this process starts so that it can reach
the shards), or drives a running stack (`--url`; DATABASE_URL then names that stack's database,
and RAY_ADDRESS / SPOTLESS_RAY_NAMESPACE its Ray for `kill-shard`). It seeds clients, verified
cleaners (profile, schedule, service area, approved document: through the API) and accepted
bookings to chat on, opens a Pusher socket per party of each conversation, then runs a closed
loop for `--seconds`: a number of virtual users per operation, each sending its next request as
soon as the last one answered:

- search: GET /api/v1/cleaners/search at a point in the cleaners' region, every other one with
  `start` and `hours`;
- book: a client requests a random cleaner for two hours on a random day, then the cleaner
  accepts (a third of those the client then cancels) or declines, or the client cancels;
- chat: a message over REST from one party; the other's socket must get it (end-to-end latency,
  and lost / duplicated / skipped messages counted by seq as bench/chat.py counts them);
- presence: a cleaner's heartbeat.

Per operation it prints requests, answers per second (2xx), p50 and p99 (over every request,
answered or not) and errors by status; a 5xx is a bug and is counted apart. With `--fault` a
process is killed with SIGKILL halfway through: `kill-shard` the conversation shard and the
presence shard holding the most entities (found among the named actors through Ray, pids asked
of the actors), `kill-edge` one Sanic server worker of the edge (`spotless dev` runs it with
`--edge-workers`, 2 by default; its sockets reconnect and catch up by seq as the apps do). `--compare` runs the load without the fault, then with it, on the same
stack in one command, and prints the ratios. Not a test.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test NATS_URL=nats://127.0.0.1:4222 \\
        .venv/bin/python -m bench.soak --seconds 30 --fault kill-shard --compare
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import secrets
import shutil
import signal
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psutil
import ray
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect

from bench.stack import (
    Conversation,
    DevStack,
    check_database,
    delete_streams,
    insert_accepted_bookings,
    make_users,
    pct,
    run_cleanups,
    start_services,
    subscribe,
)
from core.realtime import parse_apps
from core.settings import Settings
from storage.db import close_database, open_database

OPS = ("search", "search+start", "book request", "book move", "chat send", "presence")
FAULTS = ("none", "kill-shard", "kill-edge")


# --- the population ---

@dataclass
class Person:
    id: str
    token: str
    home: tuple[float, float] = (0.0, 0.0)  # lat, lng (cleaners)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Population:
    centre: tuple[float, float]
    clients: list[Person]
    cleaners: list[Person]
    conversations: list[Conversation]


def document_png() -> bytes:
    """A small PNG standing in for a scanned identity document."""
    out = io.BytesIO()
    Image.new("RGB", (64, 40), (236, 240, 245)).save(out, format="PNG")
    return out.getvalue()


def square(lat: float, lng: float, half_deg: float) -> dict[str, Any]:
    ring = [[lng - half_deg, lat - half_deg], [lng + half_deg, lat - half_deg],
            [lng + half_deg, lat + half_deg], [lng - half_deg, lat + half_deg], [lng - half_deg, lat - half_deg]]
    return {"type": "Polygon", "coordinates": [ring]}


async def seed(http: aiohttp.ClientSession, *, clients: int, cleaners: int, conversations: int,
               rng: random.Random) -> Population:
    """Users and tokens in bulk SQL; each cleaner set up and approved through the API, as the
    apps and staff do (so the spatial shards hear of the areas); accepted bookings to chat on."""
    made = await make_users(["admin"] + ["client"] * clients + ["cleaner"] * cleaners, label="Soak")
    admin = Person(*made[0])
    # A region of this run's own, away from where the tests put theirs (the southern Pacific), so
    # that nobody else's cleaners show up in its searches, even against a long-running stack.
    place = random.Random()
    centre = (round(place.uniform(-45, -35), 3), round(place.uniform(165, 175), 3))
    people = [Person(*m) for m in made[1:]]
    population = Population(centre, people[:clients], people[clients:], [])
    for cleaner in population.cleaners:
        cleaner.home = (centre[0] + rng.uniform(-0.1, 0.1), centre[1] + rng.uniform(-0.1, 0.1))
    document = document_png()

    async def ok(response: aiohttp.ClientResponse, status: int = 200) -> None:
        if response.status != status:
            raise RuntimeError(f"seeding: {response.method} {response.url.path} answered {response.status}: "
                               f"{(await response.text())[:300]}")

    async def set_up(index: int, cleaner: Person) -> None:
        async with http.put("/api/v1/cleaner/profile", headers=cleaner.auth, json={
                "bio": "Soak-test cleaner.", "time_zone": "UTC", "travel_buffer_minutes": 30,
                "services": [{"service_id": "standard", "hourly_rate_minor": 2000 + 10 * index}]}) as r:
            await ok(r)
        async with http.put("/api/v1/cleaner/availability", headers=cleaner.auth, json={
                "weekly": [{"weekday": d, "start_minute": 0, "end_minute": 1440} for d in range(7)]}) as r:
            await ok(r)
        async with http.put("/api/v1/cleaner/service-area", headers=cleaner.auth,
                            json=square(*cleaner.home, half_deg=0.15)) as r:
            await ok(r)
        form = aiohttp.FormData()
        form.add_field("document", document, filename="id.png", content_type="image/png")
        async with http.post("/api/v1/cleaner/verification", headers=cleaner.auth, data=form) as r:
            await ok(r, 201)
        async with http.post(f"/api/v1/admin/cleaners/{cleaner.id}/verification", headers=admin.auth,
                             json={"decision": "approve"}) as r:
            await ok(r)

    limit = asyncio.Semaphore(8)

    async def bounded(index: int, cleaner: Person) -> None:
        async with limit:
            await set_up(index, cleaner)

    await asyncio.gather(*(bounded(i, c) for i, c in enumerate(population.cleaners)))
    # A cleaner's chat bookings four hours apart from tomorrow: one cleaner's bookings never overlap.
    pairs = [(population.clients[i % clients], population.cleaners[i % cleaners]) for i in range(conversations)]
    ids = await insert_accepted_bookings([(c.id, k.id) for c, k in pairs],
                                         offsets=[timedelta(days=1, hours=4 * (i // cleaners))
                                                  for i in range(conversations)])
    population.conversations = [Conversation(b, (c.id, k.id), (c.token, k.token))
                                for b, (c, k) in zip(ids, pairs, strict=True)]
    return population


# --- what a phase measures ---

@dataclass
class OpStats:
    latencies_ms: list[float] = field(default_factory=list)
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "409 slot_taken", "503 ...", "connection"

    @property
    def server_errors(self) -> int:
        return sum(n for key, n in self.errors.items() if key[0] == "5")


@dataclass
class Phase:
    label: str
    fault: str
    ops: dict[str, OpStats] = field(default_factory=lambda: {op: OpStats() for op in OPS})
    sent: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)  # (conv, msg id) -> (t0, party)
    acked: dict[tuple[str, str], int] = field(default_factory=dict)  # -> seq
    delivered: set[tuple[str, str]] = field(default_factory=set)  # reached the other party
    e2e_ms: list[float] = field(default_factory=list)
    window_s: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)
    events: list[str] = field(default_factory=list)  # what the fault did, when
    repeats: int = 0  # sends answered 200 (already stored) although this client sent each once


class Client:
    """Times every request of a phase into its operation's row."""

    def __init__(self, http: aiohttp.ClientSession, phase: Phase) -> None:
        self.http, self.phase = http, phase

    async def call(self, op: str, method: str, path: str, person: Person, **kwargs: Any) -> tuple[int, Any]:
        stats = self.phase.ops[op]
        started = time.perf_counter()
        try:
            async with self.http.request(method, path, headers=person.auth, **kwargs) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            stats.errors[f"connection ({type(exc).__name__})"] += 1
            await asyncio.sleep(0.1)  # as an app backs off before it tries again
            return 0, None
        stats.latencies_ms.append((time.perf_counter() - started) * 1000)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:  # not JSON (a proxy's or a crashed handler's page): the status still counts
            body = None
        if status < 400:
            stats.ok += 1
        else:
            code = body.get("code") if isinstance(body, dict) else None
            stats.errors[f"{status} {code}" if code else str(status)] += 1
        return status, body


# --- the virtual users ---

def later_on_the_hour(rng: random.Random, *, first_day: int, last_day: int) -> datetime:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=rng.randint(first_day, last_day), hours=rng.randint(6, 18))


async def search_user(client: Client, population: Population, rng: random.Random, n: int) -> None:
    lat = population.centre[0] + rng.uniform(-0.05, 0.05)
    lng = population.centre[1] + rng.uniform(-0.05, 0.05)
    params = {"lat": f"{lat:.5f}", "lng": f"{lng:.5f}", "service": "standard"}
    op = "search"
    if n % 2:
        op = "search+start"
        params |= {"start": later_on_the_hour(rng, first_day=3, last_day=30).isoformat(), "hours": "2"}
    await client.call(op, "GET", "/api/v1/cleaners/search", rng.choice(population.clients), params=params)


async def booking_user(client: Client, population: Population, rng: random.Random, n: int) -> None:
    who, cleaner = rng.choice(population.clients), rng.choice(population.cleaners)
    start = later_on_the_hour(rng, first_day=3, last_day=170)
    status, body = await client.call("book request", "POST", "/api/v1/bookings", who, json={
        "cleaner_id": cleaner.id, "service": "standard", "start": start.isoformat(), "hours": 2,
        "address": "1 Soak Street", "city": "Soakville", "lat": cleaner.home[0], "lng": cleaner.home[1]})
    if status != 201:
        return
    booking = f"/api/v1/bookings/{body['booking']['id']}"
    roll = rng.random()
    if roll < 0.55:
        status, _ = await client.call("book move", "POST", f"{booking}/accept", cleaner)
        if status == 200 and rng.random() < 1 / 3:
            await client.call("book move", "POST", f"{booking}/cancel", who, json={"reason": "plans changed"})
    elif roll < 0.8:
        await client.call("book move", "POST", f"{booking}/decline", cleaner, json={"reason": "fully booked"})
    else:
        await client.call("book move", "POST", f"{booking}/cancel", who, json={"reason": "found someone"})


async def chat_user(client: Client, population: Population, rng: random.Random, n: int) -> None:
    conversation = rng.choice(population.conversations)
    party = rng.randint(0, 1)
    key = (conversation.id, f"soak-{secrets.token_hex(8)}")
    phase = client.phase
    phase.sent[key] = (time.perf_counter(), party)
    status, body = await client.call(
        "chat send", "POST", f"/api/v1/conversations/{conversation.id}/messages",
        Person(conversation.users[party], conversation.tokens[party]),
        json={"client_msg_id": key[1], "body": f"soak {n}"})
    if status in (200, 201):  # 200: the shard had it already (a retried call), the first message back
        phase.acked[key] = body["data"]["seq"]
        if status == 200:
            phase.repeats += 1


async def presence_user(client: Client, population: Population, rng: random.Random, n: int) -> None:
    cleaner = rng.choice(population.cleaners)
    await client.call("presence", "POST", "/api/v1/cleaner/presence", cleaner,
                      json={"lat": cleaner.home[0], "lng": cleaner.home[1]})


# --- the chat sockets: a phone per party, reconnecting and catching up as the apps do ---

@dataclass
class Listener:
    conversation: Conversation
    party: int  # 0: client, 1: cleaner
    seen: set[int] = field(default_factory=set)  # seqs received, live or fetched after a reconnect
    last_live: int = 0  # the last seq received live on the current connection
    duplicates: int = 0
    gaps: int = 0  # seqs a connection skipped live (fetched after_seq when it reconnected)
    reconnects: int = 0
    ws: ClientConnection | None = None
    closing: bool = False

    @property
    def person(self) -> Person:
        return Person(self.conversation.users[self.party], self.conversation.tokens[self.party])


class Sockets:
    def __init__(self, url: str, app_key: str, http: aiohttp.ClientSession, population: Population) -> None:
        self.ws_url = f"{url.replace('http', 'ws', 1)}/app/{app_key}?protocol=7"
        self.http = http
        self.listeners = [Listener(c, p) for c in population.conversations for p in (0, 1)]
        self.phase: Phase | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        await asyncio.gather(*(self._connect(listener) for listener in self.listeners))
        self.tasks = [asyncio.get_running_loop().create_task(self._read(listener)) for listener in self.listeners]

    async def _connect(self, listener: Listener) -> None:
        """Connect, subscribe through the auth endpoint, then fetch what was missed (after_seq)."""
        ws = await connect(self.ws_url, open_timeout=30, max_queue=None)
        try:
            await self._subscribe(ws, listener)
            listener.ws, listener.last_live = ws, 0
            await self._catch_up(listener)
        except BaseException:
            await ws.close()
            raise

    async def _subscribe(self, ws: ClientConnection, listener: Listener) -> None:
        socket_id = json.loads(json.loads(await ws.recv())["data"])["socket_id"]
        channel = f"presence-conversation.{listener.conversation.id}"
        async with self.http.post("/api/v1/broadcasting/auth", headers=listener.person.auth,
                                  data={"socket_id": socket_id, "channel_name": channel}) as response:
            if response.status != 200:
                raise RuntimeError(f"channel auth refused: {response.status} {await response.text()}")
            auth = await response.json()
        await subscribe(ws, channel, auth)

    async def _catch_up(self, listener: Listener) -> None:
        """What this party has not seen yet, page by page over REST, as the apps do."""
        after = 0
        while after + 1 in listener.seen:
            after += 1
        while True:
            async with self.http.get(f"/api/v1/conversations/{listener.conversation.id}/messages",
                                     headers=listener.person.auth,
                                     params={"after_seq": after, "limit": 100}) as response:
                if response.status != 200:  # the caller connects again
                    raise RuntimeError(f"catching up refused: {response.status} {await response.text()}")
                page = (await response.json())["data"]
            if not page:
                return
            for message in page:
                self._receive(listener, message, live=False)
            after = page[-1]["seq"]

    def _receive(self, listener: Listener, message: dict[str, Any], *, live: bool) -> None:
        seq = message["seq"]
        if live:
            if listener.last_live and seq <= listener.last_live:
                listener.duplicates += 1
                return
            if listener.last_live and seq != listener.last_live + 1:
                listener.gaps += seq - listener.last_live - 1
            listener.last_live = seq
        fresh = seq not in listener.seen
        listener.seen.add(seq)
        phase = self.phase
        if phase is None or not fresh:
            return
        key = (message["conversation_id"], message["client_msg_id"])
        sent = phase.sent.get(key)
        if sent is not None and sent[1] != listener.party:
            phase.delivered.add(key)
            if live:
                phase.e2e_ms.append((time.perf_counter() - sent[0]) * 1000)

    async def _read(self, listener: Listener) -> None:
        while not listener.closing:
            assert listener.ws is not None
            try:
                async for raw in listener.ws:
                    frame = json.loads(raw)
                    if frame["event"] == "chat.message":
                        self._receive(listener, json.loads(frame["data"]), live=True)
                    elif frame["event"] == "pusher:ping":
                        await listener.ws.send('{"event":"pusher:pong","data":{}}')
            except Exception:  # the connection dropped (a killed edge worker): reconnect below
                pass
            while not listener.closing:
                try:
                    await self._connect(listener)
                    listener.reconnects += 1
                    break
                except Exception:
                    await asyncio.sleep(0.2)

    async def settle(self, phase: Phase, wait_s: float = 20) -> None:
        deadline = time.perf_counter() + wait_s
        while time.perf_counter() < deadline:
            if set(phase.acked) <= phase.delivered:
                return
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        for listener in self.listeners:
            listener.closing = True
            if listener.ws is not None:
                await listener.ws.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# --- faults ---

@dataclass
class Target:
    settings: Settings
    population: Population
    edge_pid: int | None  # the edge's main process (its workers are its children)
    edge_port: int


def shard_prefixes(settings: Settings) -> dict[str, str]:
    """The name prefix of each kind the soak kills, from the settings the stack runs with."""
    return {"conversation": settings.model_dump().get("conversation_shard_prefix", "conversations"),
            "presence": settings.presence_shard_prefix}


async def busiest_shard(prefix: str) -> tuple[str, Any, int]:
    """(name, handle, pid) of the live shard of one kind holding the most entities, found among
    the named actors of this namespace, so that the choice never depends on routing."""
    pattern = re.compile(rf"^{re.escape(prefix)}-\d+-of-\d+$")
    best: tuple[int, str, Any, int] | None = None
    for name in ray.util.list_named_actors():
        if not pattern.match(name):
            continue
        actor = ray.get_actor(name)
        try:
            facts = await asyncio.wait_for(actor.describe.remote(), 10)
        except Exception:  # not answering: not a shard to kill
            continue
        if best is None or facts["entities"] > best[0]:
            best = (facts["entities"], name, actor, facts["pid"])
    if best is None:
        raise RuntimeError(f"no live shard named {prefix}-N-of-M in this Ray namespace")
    return best[1], best[2], best[3]


async def kill_shards(target: Target, phase: Phase, t0: float) -> None:
    """SIGKILL the busiest conversation shard and the busiest presence shard (pids asked of them
    through Ray), then time until each answers again (Ray restarts them)."""
    victims = [await busiest_shard(prefix) for prefix in shard_prefixes(target.settings).values()]
    for name, _, pid in victims:
        os.kill(pid, signal.SIGKILL)
        phase.events.append(f"{time.perf_counter() - t0:5.1f}s  SIGKILL shard {name} (pid {pid})")
    killed_at = time.perf_counter()

    async def back(name: str, actor: Any) -> None:
        while True:
            try:
                pid = await asyncio.wait_for(actor.pid.remote(), 10)
                phase.events.append(f"{time.perf_counter() - t0:5.1f}s  shard {name} answers again as pid {pid}, "
                                    f"{time.perf_counter() - killed_at:.1f}s after the kill")
                return
            except Exception:
                await asyncio.sleep(0.1)

    await asyncio.gather(*(back(name, actor) for name, actor, _ in victims))


async def kill_edge_worker(target: Target, phase: Phase, t0: float) -> None:
    """SIGKILL one Sanic server worker of the edge (a child listening on the edge's port; not
    Sanic's manager process); the other workers keep serving on the shared socket."""
    if target.edge_pid is None:
        raise SystemExit("kill-edge needs the edge's pid (--edge-pid with --url)")
    workers = [child for child in psutil.Process(target.edge_pid).children()
               if any(c.status == psutil.CONN_LISTEN and c.laddr.port == target.edge_port
                      for c in child.net_connections("tcp"))]
    if len(workers) < 2:
        raise SystemExit("kill-edge needs an edge with 2 or more workers (--edge-workers 2)")
    victim = workers[0]
    victim.kill()
    phase.events.append(f"{time.perf_counter() - t0:5.1f}s  SIGKILL edge worker pid {victim.pid} "
                        f"({len(workers) - 1} of {len(workers)} left)")


# --- a phase ---

USERS = {"search": search_user, "book": booking_user, "chat": chat_user, "presence": presence_user}


async def run_phase(label: str, fault: str, args: argparse.Namespace, url: str, sockets: Sockets,
                    target: Target, seconds: float) -> Phase:
    phase = Phase(label, fault)
    sockets.phase = phase
    for listener in sockets.listeners:  # each phase counts its own
        listener.duplicates = listener.gaps = listener.reconnects = 0
    counts = {"search": args.search_users, "book": args.booking_users, "chat": args.chat_users,
              "presence": args.presence_users}
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=url, connector=connector, timeout=timeout) as http:
        client = Client(http, phase)
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        end = t0 + seconds
        load_before = os.getloadavg()[0]

        async def virtual_user(kind: str, index: int) -> None:
            own = random.Random(f"{args.seed}-{label}-{kind}-{index}")
            n = 0
            while time.perf_counter() < end or n < args.min_rounds:
                await USERS[kind](client, target.population, own, n)
                n += 1
                if args.think_ms:
                    await asyncio.sleep(own.uniform(0, 2 * args.think_ms) / 1000)

        async def inject() -> None:
            await asyncio.sleep(seconds / 2)
            await {"kill-shard": kill_shards, "kill-edge": kill_edge_worker}[fault](target, phase, t0)

        tasks = [loop.create_task(virtual_user(kind, i)) for kind, n in counts.items() for i in range(n)]
        injector = loop.create_task(inject()) if fault != "none" else None
        await asyncio.gather(*tasks)
        phase.window_s = time.perf_counter() - t0
        phase.load = (load_before, os.getloadavg()[0])
        if injector is not None:
            await injector
    await sockets.settle(phase)
    return phase


# --- the report ---

def print_phase(phase: Phase, listeners: list[Listener], broken: int) -> None:
    fault = f" ({phase.fault} halfway)" if phase.fault != "none" else ""
    print(f"\n== {phase.label}{fault}: {phase.window_s:.1f}s, load average "
          f"{phase.load[0]:.1f} -> {phase.load[1]:.1f} on {os.cpu_count()} CPUs")
    for event in phase.events:
        print(f"   {event}")
    print(f"{'operation':<13} {'requests':>8} {'ok/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'5xx':>5}  errors")
    everything = OpStats()
    for op, stats in phase.ops.items():
        everything.latencies_ms += stats.latencies_ms
        everything.ok += stats.ok
        everything.errors.update(stats.errors)
        print(row(op, stats, phase.window_s))
    print(row("total", everything, phase.window_s))
    lost = len(set(phase.acked) - phase.delivered)
    print(f"chat: {len(phase.acked)} acknowledged, e2e (REST send -> the other party's socket) p50 "
          f"{pct(phase.e2e_ms, 50):.1f} ms, p99 {pct(phase.e2e_ms, 99):.1f} ms; lost {lost}, "
          f"duplicated {sum(s.duplicates for s in listeners)}, skipped live and fetched on reconnect "
          f"{sum(s.gaps for s in listeners)}, reconnects {sum(s.reconnects for s in listeners)}, sends answered "
          f"200 as already stored {phase.repeats}; "
          f"PostgreSQL: {broken} conversations with a gap or repeat in seq")


def row(name: str, stats: OpStats, window_s: float) -> str:
    errors = ", ".join(f"{key}: {n}" for key, n in stats.errors.most_common()) or "-"
    return (f"{name:<13} {len(stats.latencies_ms):>8} {stats.ok / window_s:>7.1f} "
            f"{pct(stats.latencies_ms, 50):>8.1f} {pct(stats.latencies_ms, 99):>8.1f} "
            f"{max(stats.latencies_ms, default=float('nan')):>8.1f} {stats.server_errors:>5}  {errors}")


def print_comparison(base: Phase, faulty: Phase) -> None:
    print(f"\n== {faulty.fault} against no fault (ratio = with fault / without)")
    print(f"{'':<13} {'----- ok/s -----':>22} {'----- p99 ms -----':>26} {'max ms':>9}")
    print(f"{'operation':<13} {'without':>7} {'with':>7} {'ratio':>6} {'without':>9} {'with':>9} {'ratio':>6} "
          f"{'with':>9}")
    for op in OPS:
        a, b = base.ops[op], faulty.ops[op]
        ok_a, ok_b = a.ok / base.window_s, b.ok / faulty.window_s
        p99_a, p99_b = pct(a.latencies_ms, 99), pct(b.latencies_ms, 99)
        print(f"{op:<13} {ok_a:>7.1f} {ok_b:>7.1f} {ok_b / ok_a if ok_a else float('nan'):>6.2f} "
              f"{p99_a:>9.1f} {p99_b:>9.1f} {p99_b / p99_a if p99_a else float('nan'):>6.2f} "
              f"{max(b.latencies_ms, default=float('nan')):>9.1f}")


def summary(phase: Phase, listeners: list[Listener], broken: int) -> dict[str, Any]:
    """The machine-readable figures (`--json`)."""
    return {"label": phase.label, "fault": phase.fault, "window_s": phase.window_s, "load": phase.load,
            "ops": {op: {"requests": len(s.latencies_ms), "ok": s.ok, "p50_ms": pct(s.latencies_ms, 50),
                         "p99_ms": pct(s.latencies_ms, 99), "max_ms": max(s.latencies_ms, default=None),
                         "server_errors": s.server_errors,
                         "errors": dict(s.errors)} for op, s in phase.ops.items()},
            "chat": {"acked": len(phase.acked), "repeats": phase.repeats,
                     "lost": len(set(phase.acked) - phase.delivered),
                     "duplicates": sum(s.duplicates for s in listeners), "broken_conversations": broken},
            "events": phase.events}


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="spotless-bench-soak-"))
    cleanups: list[Any] = [lambda: shutil.rmtree(tmp, ignore_errors=True)]
    try:
        if args.url:
            settings = Settings(database_pool_max=args.pool)
            if args.fault == "kill-shard" and not settings.ray_address:
                raise SystemExit("kill-shard with --url needs RAY_ADDRESS (and SPOTLESS_RAY_NAMESPACE) of that stack")
            if args.fault == "kill-edge" and args.edge_pid is None:
                raise SystemExit("kill-edge with --url needs --edge-pid: the pid of `spotless edge --workers 2+`")
            if args.fault == "kill-shard":
                ray.init(address=settings.ray_address, namespace=settings.ray_namespace, log_to_driver=False,
                         logging_level="WARNING")
                cleanups.append(ray.shutdown)
            url, edge_pid = args.url.rstrip("/"), args.edge_pid
        else:
            services = await start_services(os.environ.get("DATABASE_URL", ""), os.environ.get("NATS_URL", ""),
                                            tmp, namespace_prefix="bench-soak")
            cleanups.extend(services.cleanups)
            prefix = f"soak_{secrets.token_hex(4)}"
            cleanups.append(lambda: delete_streams(services.nats_url, prefix))
            env = {"DATABASE_URL": services.database_url, "NATS_URL": services.nats_url,
                   "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
                   "SPOTLESS_RAY_NAMESPACE": services.namespace, "SPOTLESS_DATA_DIR": str(tmp / "data"),
                   # the NATS server may be shared: JetStream names of this run's own
                   "SPOTLESS_JETSTREAM_PREFIX": prefix,
                   "SPOTLESS_EDGE_WORKERS": str(args.edge_workers),
                   "SPOTLESS_CONVERSATION_SHARDS": str(args.shards), "SPOTLESS_PRESENCE_SHARDS": str(args.shards),
                   "SPOTLESS_SPATIAL_SHARDS": str(args.shards),
                   "SPOTLESS_DATABASE_POOL_MAX": str(args.pool), "SPOTLESS_LOG_LEVEL": "WARNING"}
            dev = await asyncio.to_thread(DevStack.start, env, tmp)
            cleanups.append(dev.stop)
            settings = Settings(database_url=services.database_url, database_pool_max=args.pool,
                                ray_namespace=services.namespace,
                                conversation_shards=args.shards, presence_shards=args.shards,
                                spatial_shards=args.shards)
            url, edge_pid = dev.url, dev.edge_pid
        await open_database(settings, database_url=settings.database_url)
        cleanups.append(close_database)
        rng = random.Random(args.seed)
        async with aiohttp.ClientSession(base_url=url, timeout=aiohttp.ClientTimeout(total=60)) as http:
            started = time.perf_counter()
            population = await seed(http, clients=args.clients, cleaners=args.cleaners,
                                    conversations=args.conversations, rng=rng)
            sockets = Sockets(url, parse_apps(settings.realtime_apps)[0].key, http, population)
            await sockets.open()
            print(f"soak against {url}: {args.clients} clients, {args.cleaners} verified cleaners, "
                  f"{args.conversations} conversations ({len(sockets.listeners)} sockets), seeded and opened in "
                  f"{time.perf_counter() - started:.1f}s; virtual users: {args.search_users} search, "
                  f"{args.booking_users} book, {args.chat_users} chat, {args.presence_users} presence "
                  f"(closed loop, think time {args.think_ms} ms); {os.cpu_count()} CPUs, load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            target = Target(settings, population, edge_pid, urlsplit(url).port or 80)
            if args.warmup:
                await run_phase("warm-up", "none", args, url, sockets, target, args.warmup)
            plan = [("no fault", "none")] if args.compare and args.fault != "none" else []
            plan.append(("with fault" if args.fault != "none" else "no fault", args.fault))
            phases: list[Phase] = []
            results = []
            for label, fault in plan:
                phase = await run_phase(label, fault, args, url, sockets, target, args.seconds)
                _, broken = await check_database([c.id for c in population.conversations])
                print_phase(phase, sockets.listeners, broken)
                phases.append(phase)
                results.append(summary(phase, sockets.listeners, broken))
            if len(phases) == 2:
                print_comparison(*phases)
            await sockets.close()
        if args.json:
            await asyncio.to_thread(Path(args.json).write_text, json.dumps(results, indent=1))
    finally:
        await run_cleanups(cleanups)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each measured run")
    parser.add_argument("--fault", choices=FAULTS, default="none", help="killed halfway through the run")
    parser.add_argument("--compare", action="store_true", help="run without the fault first, then with it")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring (0: none)")
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--cleaners", type=int, default=20)
    parser.add_argument("--conversations", type=int, default=20, help="a socket per party of each")
    parser.add_argument("--search-users", type=int, default=4, help="virtual users searching")
    parser.add_argument("--booking-users", type=int, default=2, help="virtual users booking")
    parser.add_argument("--chat-users", type=int, default=4, help="virtual users chatting")
    parser.add_argument("--presence-users", type=int, default=2, help="virtual cleaners sending heartbeats")
    parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause between a user's requests")
    parser.add_argument("--edge-workers", type=int, default=2, help="of the edge `spotless dev` starts")
    parser.add_argument("--shards", type=int, default=2, help="conversation, presence and spatial shards it starts")
    parser.add_argument("--pool", type=int, default=4, help="database connections per process it starts")
    parser.add_argument("--seed", type=int, default=1, help="of the random choices")
    parser.add_argument("--min-rounds", type=int, default=0,
                        help="each virtual user does at least this many rounds, however long they take")
    parser.add_argument("--url", default="", help="a running stack's edge (DATABASE_URL: its database)")
    parser.add_argument("--edge-pid", type=int, default=None, help="with --url: the edge's pid, for kill-edge")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
