"""Realtime test stack: two edge processes (separate ports, so a test picks the worker each
socket lands on) sharing NATS, Ray and PostgreSQL, configured with test apps and short timers."""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from core.clock import utcnow
from tests.conftest import REALTIME_APPS, Account, register
from tests.realtime.pusher_client import PusherSocket
from tests.stack import EdgeProcess, start_edge

APPS = REALTIME_APPS
REALTIME_ENV = {
    "SPOTLESS_REALTIME_APPS": json.dumps(APPS),
    "SPOTLESS_REALTIME_ACTIVITY_TIMEOUT_S": "2",
    "SPOTLESS_REALTIME_PONG_TIMEOUT_S": "1",
    "SPOTLESS_REALTIME_WORKER_HEARTBEAT_S": "1",
    "SPOTLESS_CONVERSATION_SHARDS": "2",
    # Presence shards of their own, made by these edges with these apps (they publish as app 100001).
    "SPOTLESS_PRESENCE_SHARD_PREFIX": "rt-presence",
    "SPOTLESS_PRESENCE_NOTIFY_S": "0.3",
}


@pytest.fixture(scope="session")
def rt_edges(services: dict[str, str], tmp_root: Path) -> Iterator[list[EdgeProcess]]:
    edges = [start_edge({**services, **REALTIME_ENV}, tmp_root) for _ in range(2)]
    yield edges
    artifacts = Path(__file__).parent.parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    for number, edge in enumerate(edges):
        edge.stop()
        shutil.copy(edge.log, artifacts / f"realtime-edge-{number}.log")


@pytest.fixture(scope="session")
def rt_edge(rt_edges: list[EdgeProcess]) -> EdgeProcess:
    return rt_edges[0]


@pytest.fixture
def rt_api(rt_edge: EdgeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rt_edge.url, timeout=30) as client:
        yield client


@pytest.fixture
def ws_url(rt_edge: EdgeProcess) -> str:
    return rt_edge.url.replace("http://", "ws://")


def socket_url(edge: EdgeProcess, key: str = "spotless-key", query: str = "?protocol=7") -> str:
    return edge.url.replace("http://", "ws://") + f"/app/{key}{query}"


@pytest_asyncio.fixture(loop_scope="session")
async def sockets(rt_edges: list[EdgeProcess]) -> Any:
    """Opens Pusher sockets on edge 0 or 1; closes them all after the test."""
    opened: list[PusherSocket] = []

    async def open_socket(edge: int = 0, key: str = "spotless-key") -> PusherSocket:
        sock = await PusherSocket.connect(socket_url(rt_edges[edge], key))
        opened.append(sock)
        return sock

    yield open_socket
    for sock in opened:
        await sock.close()


@pytest.fixture
def party(rt_api: httpx.Client) -> Any:
    def make(role: str, name: str = "Test Person") -> Account:
        return register(rt_api, role=role, name=name)

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def booking(db: None, party: Any) -> Any:
    """A client, a cleaner and a booking between them (its id is also the conversation's)."""
    from tortoise import connections

    from core.ids import new_id

    async def make() -> tuple[Account, Account, str]:
        client = party("client", "Cora Client")
        cleaner = party("cleaner", "Cleo Cleaner")
        booking_id, starts = str(new_id()), utcnow() + timedelta(days=2)
        # The bookings issue owns booking creation; until its action lands, write the row itself.
        db = connections.get("default")
        await db.execute_query("INSERT INTO cleaner_profiles (user_id) VALUES ($1) ON CONFLICT DO NOTHING",
                               [cleaner.id])
        await db.execute_query(
            "INSERT INTO bookings (id, client_id, cleaner_id, service_id, state, starts_at, ends_at) "
            "VALUES ($1, $2, $3, 'standard', 'accepted', $4, $5)",
            [booking_id, client.id, cleaner.id, starts, starts + timedelta(hours=2)])
        return client, cleaner, booking_id

    return make


def auth_for(api: httpx.Client, account: Account, socket_id: str, channel: str) -> dict[str, Any]:
    response = api.post("/api/v1/broadcasting/auth", headers=account.auth,
                        data={"socket_id": socket_id, "channel_name": channel})
    assert response.status_code == 200, response.text
    return response.json()


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


@pytest_asyncio.fixture(loop_scope="session")
async def rt_async(rt_edges: list[EdgeProcess]) -> Any:
    """Async HTTP clients for edge 0 and 1 (sockets keep being served while a request waits)."""
    async with httpx.AsyncClient(base_url=rt_edges[0].url, timeout=60) as zero, \
            httpx.AsyncClient(base_url=rt_edges[1].url, timeout=60) as one:
        yield [zero, one]


async def on_conversation(sockets: Any, rt_api: httpx.Client, account: Account, conversation_id: str,
                          edge: int = 0) -> tuple[Any, str]:
    """A socket of `account`'s on the conversation's presence channel, on edge worker `edge`."""
    sock = await sockets(edge)
    channel = f"presence-conversation.{conversation_id}"
    await sock.subscribe(channel, auth_for(rt_api, account, sock.socket_id, channel))
    return sock, channel
