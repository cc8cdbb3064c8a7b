"""Benchmark: chat sends through ConversationShards, coalesced (the edge's router) against one
Ray call per message (the baseline), in the same run.

Makes `--conversations` bookings in a fresh database on DATABASE_URL's server, starts a local
Ray and its own nats-server, then for 1, 16 and 64 concurrent senders spread over the
conversations sends for `--seconds` through each path and prints messages/s, p50, p99, Ray
calls per message and the ratio. Every send is a real one: persisted, sequenced, published.
Not a test.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.chat \
        --conversations 200 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import ray
from tortoise import connections

from actors.conversations import ConversationRouter
from cli.embedded import EmbeddedNats, free_port
from core.clock import utcnow
from core.ids import new_id
from core.settings import Settings
from storage.db import close_database, open_database
from storage.migrate import migrate
from tests.stack import create_database, drop_database


async def make_conversations(count: int) -> list[tuple[str, str]]:
    """`count` bookings (conversation id, client id) between fresh users."""
    db = connections.get("default")
    out: list[tuple[str, str]] = []
    starts = utcnow() + timedelta(days=1)
    for n in range(count):
        client, cleaner, booking = str(new_id()), str(new_id()), str(new_id())
        for user, role in ((client, "client"), (cleaner, "cleaner")):
            await db.execute_query("INSERT INTO users (id, email, name, role) VALUES ($1, $2, $3, $4)",
                                   [user, f"{role}.{user}@bench.local", role, role])
        await db.execute_query("INSERT INTO cleaner_profiles (user_id) VALUES ($1)", [cleaner])
        await db.execute_query(
            "INSERT INTO bookings (id, client_id, cleaner_id, service_id, state, starts_at, ends_at) "
            "VALUES ($1, $2, $3, 'standard', 'accepted', $4, $5)",
            [booking, client, cleaner, starts + timedelta(hours=3 * n), starts + timedelta(hours=3 * n + 2)])
        out.append((booking, client))
    return out


async def drive(send: Callable[[str, str, str], Awaitable[Any]], conversations: list[tuple[str, str]],
                *, senders: int, seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def sender(number: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            conversation, client = conversations[(number + n * senders) % len(conversations)]
            started = time.perf_counter()
            await send(conversation, client, f"b{number}-{n}-{secrets.token_hex(3)}")
            latencies.append(time.perf_counter() - started)
            n += 1

    await asyncio.gather(*(sender(i) for i in range(senders)))
    return len(latencies), latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


async def main(args: argparse.Namespace) -> None:
    server_url = os.environ["DATABASE_URL"]
    database_url, name = await create_database(server_url)
    tmp = Path(tempfile.mkdtemp(prefix="spotless-bench-chat-"))
    nats_server = EmbeddedNats(tmp / "nats", free_port())
    nats_server.start()
    try:
        await migrate(database_url)
        settings = Settings(database_url=database_url, nats_url=nats_server.url, data_dir=tmp,
                            ray_namespace=f"bench-chat-{secrets.token_hex(3)}",
                            conversation_shards=args.shards)
        await open_database(settings)
        ray.init(namespace=settings.ray_namespace, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
        conversations = await make_conversations(args.conversations)
        router = ConversationRouter(settings)

        async def coalesced(conversation: str, client: str, key: str) -> Any:
            return await router.send(conversation, sender_id=client, client_msg_id=key, body="hello")

        async def one_call_each(conversation: str, client: str, key: str) -> Any:
            shard = router.shards[router.shard_of(conversation)]
            return (await shard.send.remote([(conversation, client, key, "hello")]))[0]

        await drive(coalesced, conversations, senders=8, seconds=1)  # warm: load every conversation
        print(f"{args.conversations} conversations, {args.shards} shards, {args.seconds:.0f} s per row")
        print(f"{'senders':>8} {'path':>10} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'calls/msg':>10}")
        for senders in (1, 16, 64):
            rates = {}
            for label, send in (("per-call", one_call_each), ("coalesced", coalesced)):
                before = sum([s["calls"] for s in await asyncio.gather(*(a.stats.remote() for a in router.shards))])
                count, latencies = await drive(send, conversations, senders=senders, seconds=args.seconds)
                after = sum([s["calls"] for s in await asyncio.gather(*(a.stats.remote() for a in router.shards))])
                rates[label] = count / args.seconds
                print(f"{senders:>8} {label:>10} {rates[label]:>9.0f} {pct(latencies, 50):>8.2f} "
                      f"{pct(latencies, 99):>8.2f} {(after - before) / max(count, 1):>10.2f}")
            print(f"{'':>8} {'ratio':>10} {rates['coalesced'] / max(rates['per-call'], 1e-9):>9.2f}x")
    finally:
        ray.shutdown()
        await close_database()
        nats_server.stop()
        await drop_database(server_url, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args()))
