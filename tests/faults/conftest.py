"""A stack of the faults tests' own: an embedded PostgreSQL and NATS that these tests stop,
restart and kill without touching the session's servers, an edge process pointed at them, an
outbox relay (`spotless worker relay`), and shard actors in a Ray namespace of their own on the
session's Ray (shard actors keep the settings of the process that created them, so they must
be made by this edge, with this database).

Shared by the package (one stack start, ~15 s, for every fault); each test leaves the servers
running when it ends. State is built through the public API, as an app and an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest_asyncio
import ray

from actors.runtime import shard_name
from cli.embedded import EmbeddedNats, EmbeddedPostgres, stop_process
from storage.migrate import migrate
from tests.conftest import Account, register, unique_email
from tests.core.test_supply import pdf_bytes
from tests.edge.test_search import somewhere, square
from tests.stack import ROOT, EdgeProcess, start_edge, start_nats, start_postgres

# One shard of each kind: fewer Ray processes on a two-core CI machine, and the shard a test
# kills is the one every conversation and cleaner lives on.
FAULTS_ENV = {
    "SPOTLESS_CONVERSATION_SHARDS": "1",
    "SPOTLESS_PRESENCE_SHARDS": "1",
    "SPOTLESS_SPATIAL_SHARDS": "1",
    "SPOTLESS_PRESENCE_CHANNEL_SHARDS": "1",
    "SPOTLESS_DATABASE_POOL_MAX": "4",
    "SPOTLESS_RELAY_POLL_S": "0.2",
}


@dataclass
class FaultStack:
    pg: EmbeddedPostgres
    nats: EmbeddedNats
    env: dict[str, str]
    edge: EdgeProcess
    spare_edge: EdgeProcess  # a second worker on the same stack, for the test that kills one
    relay: subprocess.Popen[bytes]
    log_dir: Path

    @property
    def database_url(self) -> str:
        return self.pg.url

    @property
    def namespace(self) -> str:
        return self.env["SPOTLESS_RAY_NAMESPACE"]

    async def stop_postgres(self) -> None:
        await asyncio.to_thread(self.pg.stop)

    async def start_postgres(self) -> None:
        await asyncio.to_thread(self.pg.start)

    async def stop_nats(self) -> None:
        await asyncio.to_thread(self.nats.stop)

    async def start_nats(self) -> None:
        await asyncio.to_thread(self.nats.start)

    def shard(self, prefix: str, shard: int = 0, count: int = 1) -> Any:
        return ray.get_actor(shard_name(prefix, shard, count), namespace=self.namespace)

    async def kill_shard(self, prefix: str, *, within_s: float = 30) -> int:
        """SIGKILL the process of a shard actor, as the OOM killer or a crash would; wait until
        Ray has it running again in a new process. Returns the dead pid."""
        actor = self.shard(prefix)
        pid = await asyncio.wait_for(actor.pid.remote(), within_s)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + within_s
        while True:
            with contextlib.suppress(Exception):
                if await asyncio.wait_for(actor.pid.remote(), 5) != pid:
                    return pid
            assert time.monotonic() < deadline, f"{prefix} shard did not come back within {within_s} s"
            await asyncio.sleep(0.2)

    async def query(self, sql: str, *args: Any, within_s: float = 30) -> list[asyncpg.Record]:
        """Read the truth straight from PostgreSQL (retrying while the server comes back)."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                conn = await asyncpg.connect(self.database_url, timeout=5)
                try:
                    return await conn.fetch(sql, *args)
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def until_ready(self, within_s: float = 60) -> None:
        """/readyz is 200 again: the edge reconnected to everything without being restarted."""
        deadline = time.monotonic() + within_s
        async with httpx.AsyncClient(base_url=self.edge.url, timeout=5) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                assert time.monotonic() < deadline, f"the edge was not ready within {within_s} s"
                await asyncio.sleep(0.2)

    async def until_outbox_drained(self, within_s: float = 45) -> None:
        deadline = time.monotonic() + within_s
        while True:
            pending = (await self.query("SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL"))[0]["n"]
            if pending == 0:
                return
            assert time.monotonic() < deadline, f"{pending} outbox rows still unsent after {within_s} s"
            await asyncio.sleep(0.3)


def _start_relay(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "relay"],
                                env={**os.environ, **env}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _make_admin(env: dict[str, str], email: str) -> subprocess.Popen[bytes]:
    """What an operator runs: `spotless users make-admin <email>` (started; see _finish)."""
    return subprocess.Popen([sys.executable, "-m", "cli.main", "users", "make-admin", email],
                            env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen[bytes]) -> None:
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output.decode()


async def _started(*starts: Any) -> list[Any]:
    """Run blocking starts side by side; each result is what started or the error it raised
    (so that whatever did start is stopped even when another failed)."""
    return await asyncio.gather(*(asyncio.to_thread(start) for start in starts), return_exceptions=True)


async def _stop(*stops: Any) -> None:
    await asyncio.gather(*(asyncio.to_thread(stop) for stop in stops), return_exceptions=True)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def fault_stack(services: dict[str, str], tmp_root: Path) -> AsyncIterator[FaultStack]:
    root = tmp_root / f"faults-{secrets.token_hex(3)}"
    root.mkdir()
    namespace = f"spotless-faults-{secrets.token_hex(3)}"
    servers: list[Any] = []
    processes: list[Any] = []
    try:
        servers = await _started(lambda: start_postgres(root), lambda: start_nats(root))
        for failed in servers:
            if isinstance(failed, BaseException):
                raise failed
        pg, nats = servers
        await migrate(pg.url)
        env = {**services, **FAULTS_ENV, "DATABASE_URL": pg.url, "NATS_URL": nats.url,
               "SPOTLESS_RAY_NAMESPACE": namespace,
               "SPOTLESS_JETSTREAM_PREFIX": f"spotless_faults_{secrets.token_hex(3)}",
               "SPOTLESS_DATA_DIR": str(root / "data")}
        relay = _start_relay(env, root / "relay.log")
        processes = [relay]
        edges = await _started(lambda: start_edge(env, root), lambda: start_edge(env, root))
        processes += edges
        for failed in edges:
            if isinstance(failed, BaseException):
                raise failed
        edge, spare_edge = edges
        yield FaultStack(pg, nats, env, edge, spare_edge, relay, root)
    finally:
        await _stop(*(lambda p=p: stop_process(p, sig=signal.SIGTERM, timeout_s=20)
                      for p in processes if isinstance(p, subprocess.Popen)),
                    *(e.stop for e in processes if isinstance(e, EdgeProcess)))
        await _stop(*(server.stop for server in servers if not isinstance(server, BaseException)))
        # the shard actors are detached: they outlive the edges unless killed
        for info in ray.util.list_named_actors(all_namespaces=True):
            if info["namespace"] == namespace:
                with contextlib.suppress(Exception):
                    ray.kill(ray.get_actor(info["name"], namespace=namespace))
        artifacts = Path(__file__).parent.parent / "artifacts"
        artifacts.mkdir(exist_ok=True)
        for log in root.glob("*.log"):
            shutil.copy(log, artifacts / f"faults-{log.name}")


@pytest_asyncio.fixture(loop_scope="session")
async def stack(fault_stack: FaultStack) -> FaultStack:
    """The package's stack with both servers running (a test that failed halfway through a
    fault may have left one stopped)."""
    if fault_stack.pg.proc is None or fault_stack.pg.proc.poll() is not None:
        await fault_stack.start_postgres()
    if fault_stack.nats.proc is None or fault_stack.nats.proc.poll() is not None:
        await fault_stack.start_nats()
    return fault_stack


# --- the marketplace the faults hit: made once through the public API ---

CLEANERS = 4  # 0-2: a conversation each (0 also heartbeats), 1-2: the races; 3: the booking load
CLIENTS = 12


@dataclass
class Market:
    lat: float
    lng: float
    cleaners: list[Account]
    clients: list[Account]
    conversations: list[tuple[Account, Account, str]]  # client, cleaner, booking (= conversation) id
    next_day: int = 3
    load_next: datetime = field(default_factory=lambda: _midnight_in(days=30))

    @property
    def load_cleaner(self) -> Account:
        """The cleaner the booking load books, slot after slot, from `load_next` on."""
        return self.cleaners[-1]

    def fresh_day(self) -> datetime:
        """Midnight UTC of a day no race has used yet (each race books its own day)."""
        self.next_day += 1
        return _midnight_in(days=self.next_day)


def _midnight_in(*, days: int) -> datetime:
    day = (datetime.now(UTC) + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def booking_body(cleaner: Account, start: datetime, market: Market) -> dict[str, Any]:
    return {"cleaner_id": cleaner.id, "service": "standard", "start": start.isoformat(), "hours": 2,
            "address": "1 Fault Lane, London", "lat": market.lat, "lng": market.lng}


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


def _build_market(stack: FaultStack) -> Market:
    lat, lng = somewhere()
    with httpx.Client(base_url=stack.edge.url, timeout=30) as http:
        staff_email = unique_email("staff")
        staff = register(http, role="client", email=staff_email, name="Sam Staff")
        promoting = _make_admin(stack.env, staff_email)  # a process start: runs while we go on
        cleaners = [register(http, role="cleaner", name=f"Cleo {n}") for n in range(CLEANERS)]
        for cleaner in cleaners:
            ok(http.put("/api/v1/cleaner/profile", headers=cleaner.auth, json={
                "time_zone": "UTC", "travel_buffer_minutes": 0,
                "services": [{"service_id": "standard", "hourly_rate_minor": 2000}]}))
            ok(http.put("/api/v1/cleaner/availability", headers=cleaner.auth, json={
                "weekly": [{"weekday": day, "start_minute": 0, "end_minute": 1440} for day in range(7)]}))
            ok(http.put("/api/v1/cleaner/service-area", headers=cleaner.auth, json=square(lat, lng)))
            ok(http.post("/api/v1/cleaner/verification", headers=cleaner.auth,
                         files={"document": ("passport.pdf", pdf_bytes(), "application/pdf")}), 201)
        clients = [register(http, role="client", name=f"Cora {n}") for n in range(CLIENTS)]
        _finish(promoting)
        for cleaner in cleaners:
            ok(http.post(f"/api/v1/admin/cleaners/{cleaner.id}/verification", headers=staff.auth,
                         json={"decision": "approve"}))
        market = Market(lat, lng, cleaners, clients, [])
        # a booking for each of three cleaners, whose conversation the chat load talks in
        first = market.fresh_day()
        for n, cleaner in enumerate(cleaners[:3]):
            made = ok(http.post("/api/v1/bookings", headers=clients[n].auth,
                                json=booking_body(cleaner, first + timedelta(hours=2), market)), 201)
            market.conversations.append((clients[n], cleaner, made["booking"]["id"]))
    return market


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def market(fault_stack: FaultStack) -> Market:
    return await asyncio.to_thread(_build_market, fault_stack)
