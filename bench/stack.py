"""What the end-to-end benchmarks share: the services a stack runs on, and users made in bulk.

`start_services` makes what `spotless dev` would otherwise start (a fresh database on
DATABASE_URL's server, or an embedded PostgreSQL; NATS_URL or an embedded nats-server; a local
Ray) so that the benchmark process itself can reach the database and the shard actors;
`DevStack` then runs `spotless dev` on them, as a developer does, with ports of its own.
`make_users` and `seed_conversations` write accounts, bearer tokens and bookings with bulk SQL:
a benchmark needs thousands of them, and the register endpoint is rate-limited per IP. Nothing
here measures anything, and nothing here is used by the product.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import ray
from tortoise import connections
from websockets.asyncio.client import ClientConnection

from actors.runtime import start_local_ray
from cli.embedded import EmbeddedNats, free_port
from core.accounts import hash_token_secret
from core.clock import utcnow
from core.ids import new_id, new_secret
from storage.migrate import migrate
from tests.stack import ROOT, create_database, drop_database, start_postgres


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN when there is nothing to rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@dataclass
class Services:
    """A fresh database, NATS and a local Ray, and how to stop what was started for them."""

    database_url: str
    nats_url: str
    namespace: str
    server_url: str  # the PostgreSQL server the database was made on
    cleanups: list[Callable[[], Any]] = field(default_factory=list)


async def start_services(server_url: str, nats_url: str, tmp: Path, *, namespace_prefix: str) -> Services:
    """Make a migrated database on `server_url` (empty: an embedded PostgreSQL in `tmp`), use
    `nats_url` (empty: an embedded nats-server) and start a local Ray in a fresh namespace."""
    cleanups: list[Callable[[], Any]] = []
    if not server_url:
        postgres = start_postgres(tmp)
        cleanups.append(postgres.stop)
        server_url = postgres.url
    database_url, name = await create_database(server_url)
    cleanups.append(lambda: drop_database(server_url, name))
    await migrate(database_url)
    if not nats_url:
        nats_server = EmbeddedNats(tmp / "nats", free_port())
        nats_server.start()
        cleanups.append(nats_server.stop)
        nats_url = nats_server.url
    namespace = f"{namespace_prefix}-{secrets.token_hex(3)}"
    start_local_ray(namespace)
    cleanups.append(ray.shutdown)
    return Services(database_url, nats_url, namespace, server_url, cleanups)


@dataclass
class DevStack:
    """`spotless dev` as a child process, on the services this process made."""

    proc: subprocess.Popen[bytes]
    log: Path
    url: str

    @classmethod
    def start(cls, env: dict[str, str], tmp: Path, timeout_s: float = 180) -> DevStack:
        edge_port = free_port()
        log = tmp / "dev.log"
        full = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        full |= env | {"SPOTLESS_EDGE_PORT": str(edge_port), "SPOTLESS_ADMIN_PORT": str(free_port()),
                       "SPOTLESS_PUBLIC_URL": f"http://127.0.0.1:{edge_port}"}
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "cli.main", "dev"], env=full, cwd=ROOT,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        stack = cls(proc, log, f"http://127.0.0.1:{edge_port}")
        deadline = time.monotonic() + timeout_s
        while "spotless: ready" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                stack.stop()
                raise RuntimeError(f"spotless dev did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        return stack

    @property
    def edge_pid(self) -> int:
        for child in psutil.Process(self.proc.pid).children():
            if "edge" in child.cmdline():
                return child.pid
        raise RuntimeError("spotless dev runs no edge")

    def stop(self) -> None:
        """Ctrl-C, as a developer stops it; it stops its children itself."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


async def delete_streams(nats_url: str, prefix: str) -> None:
    """Delete the JetStream streams a stack made under `prefix` (the NATS server may be shared)."""
    import nats

    from core.events import dead_letter_stream, jobs_stream

    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        existing = {info.config.name for info in await js.streams_info()}
        for name in {jobs_stream(prefix), dead_letter_stream(prefix)} & existing:
            await js.delete_stream(name)
    finally:
        await client.close()


async def run_cleanups(cleanups: list[Callable[[], Any]]) -> None:
    """Undo in reverse order; each step may be sync or async."""
    for cleanup in reversed(cleanups):
        result = cleanup()
        if asyncio.iscoroutine(result):
            await result


async def make_users(roles: list[str], *, label: str = "Bench") -> list[tuple[str, str]]:
    """One user per role (client, cleaner, admin), each with a bearer token: [(id, token)].
    Cleaners get an empty profile row, as registering makes one."""
    db = connections.get("default")
    users = [str(new_id()) for _ in roles]
    await db.execute_query(
        "INSERT INTO users (id, email, name, role) SELECT u::uuid, u || '@bench.local', $3 || ' ' || r, r "
        "FROM unnest($1::text[], $2::text[]) AS t(u, r)", [users, roles, label])
    cleaners = [u for u, r in zip(users, roles, strict=True) if r == "cleaner"]
    await db.execute_query("INSERT INTO cleaner_profiles (user_id) SELECT unnest($1::uuid[])", [cleaners])
    secrets_ = [new_secret(40) for _ in users]
    rows = await db.execute_query_dict(
        "INSERT INTO personal_access_tokens (user_id, name, token_hash) "
        "SELECT u::uuid, 'bench', h FROM unnest($1::text[], $2::text[]) AS t(u, h) RETURNING id, user_id::text",
        [users, [hash_token_secret(s) for s in secrets_]])
    secret_of = dict(zip(users, secrets_, strict=True))
    token_of = {r["user_id"]: f"{r['id']}|{secret_of[r['user_id']]}" for r in rows}
    return [(u, token_of[u]) for u in users]


@dataclass
class Conversation:
    id: str
    users: tuple[str, str]  # client id, cleaner id
    tokens: tuple[str, str]  # their bearer tokens


async def insert_accepted_bookings(pairs: list[tuple[str, str]], *,
                                   offsets: list[timedelta] | None = None) -> list[str]:
    """An accepted two-hour booking per (client id, cleaner id), i.e. a conversation each,
    starting `offsets` from now (default: all in a week, beyond the reminders' leads: against a
    running `spotless dev`, bookings a day away had its worker send two reminders for each of
    thousands of them while the chat benchmark measured)."""
    bookings = [str(new_id()) for _ in pairs]
    now = utcnow()
    starts = [now + offset for offset in (offsets or [timedelta(days=7)] * len(pairs))]
    await connections.get("default").execute_query(
        "INSERT INTO bookings (id, client_id, cleaner_id, service_id, state, starts_at, ends_at) "
        "SELECT b::uuid, c::uuid, k::uuid, 'standard', 'accepted', s, s + interval '2 hours' "
        "FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS t(b, c, k, s)",
        [bookings, [c for c, _ in pairs], [k for _, k in pairs], starts])
    return bookings


async def seed_conversations(count: int) -> list[Conversation]:
    """`count` bookings between fresh users, with a bearer token for each user (bulk SQL)."""
    made = await make_users(["client"] * count + ["cleaner"] * count)
    clients, cleaners = made[:count], made[count:]
    bookings = await insert_accepted_bookings([(c[0], k[0]) for c, k in zip(clients, cleaners, strict=True)])
    return [Conversation(b, (c[0], k[0]), (c[1], k[1]))
            for b, c, k in zip(bookings, clients, cleaners, strict=True)]


async def check_database(conversation_ids: list[str]) -> tuple[int, int]:
    """(messages stored, conversations whose seqs are not exactly 1..count)."""
    rows = await connections.get("default").execute_query_dict(
        "SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi, count(DISTINCT seq) AS d FROM chat_messages "
        "WHERE conversation_id = ANY($1::uuid[]) GROUP BY conversation_id", [conversation_ids])
    broken = sum(1 for r in rows if not (r["lo"] == 1 and r["hi"] == r["n"] == r["d"]))
    return sum(int(r["n"]) for r in rows), broken


async def subscribe(ws: ClientConnection, channel: str, auth: dict[str, Any]) -> None:
    """Subscribe a Pusher socket to `channel` with its auth (`auth`, `channel_data`) and wait
    until the server confirms; RuntimeError when it refuses."""
    await ws.send(subscribe_frame(channel, auth))
    await subscribed(ws.recv)


def subscribe_frame(channel: str, auth: dict[str, Any]) -> str:
    return json.dumps({"event": "pusher:subscribe", "data": {"channel": channel, **auth}})


async def subscribed(recv: Callable[[], Awaitable[Any]]) -> None:
    """Wait until the server confirms the subscription just sent; RuntimeError when it refuses."""
    while True:
        frame = json.loads(await recv())
        if frame["event"] == "pusher_internal:subscription_succeeded":
            return
        if frame["event"] == "pusher:error":
            raise RuntimeError(f"subscribe refused: {frame}")
