"""Benchmark: the chat write alone, and the disk under it, in the same run.

A message is acknowledged only once PostgreSQL has committed it, so every commit waits for the
disk to flush the write-ahead log. When the disk stalls, every message in flight waits with it,
and the chat benchmark's tail is those waits (bench.chat prints, per row, the batch statements
that took over 20 ms). This measures the two layers under that, one after the other, at the same
pace: a batch every `--batch / --rate` seconds.

1. The disk: write 8 KiB and `fdatasync` it, in `--dir` (default: PostgreSQL's data directory when
   this machine can write there, else a temporary directory), as a commit does.
2. The statement: `storage.chat.append_batch`, exactly as a conversation shard runs it (the
   messages, the conversations' last seq and the held push requests, one transaction), with
   `--batch` messages over as many conversations of a fresh database.

For each it prints p50 / p99 / max and how many took over 20 ms; for the statement also the WAL
bytes written per message, and where the slow ones fell in the WAL: a commit that opens a new
16 MiB segment may wait for the file to be created and filled with zeros (`wal_init_zero`).
Not a test.

    [DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test] .venv/bin/python -m bench.chat_store \\
        [--rate 2000] [--batch 16] [--seconds 20] [--dir PATH]

Without DATABASE_URL it starts an embedded PostgreSQL (as `make run` does) in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bench.stack import pct, seed_conversations
from core.settings import Settings
from storage import chat
from storage.db import asyncpg_dsn, close_database, open_database
from storage.migrate import migrate
from tests.stack import create_database, drop_database, start_postgres

SLOW_MS = 20.0
NEAR_SEGMENT_START = 256 * 1024  # bytes into a WAL segment within which a commit counts as opening it


def figures(name: str, ms: list[float]) -> str:
    slow = sum(m > SLOW_MS for m in ms)
    return (f"{name}: n {len(ms):,}, p50 {pct(ms, 50):.2f} p99 {pct(ms, 99):.2f} max {max(ms):.1f} ms; "
            f"{slow} over {SLOW_MS:g} ms")


def until_due(started: float, n: int, interval: float) -> float:
    """Seconds until the n-th operation of a steady pace begun at `started` is due (0 if late)."""
    return max(0.0, started + n * interval - time.perf_counter())


def disk_loop(directory: Path, *, interval: float, seconds: float) -> list[float]:
    """Write 8 KiB at the next offset and fdatasync, every `interval` s: each one's milliseconds."""
    block = os.urandom(8192)
    times: list[float] = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="spotless-bench-") as file:
        fd = file.fileno()
        started = time.perf_counter()
        for n in range(int(seconds / interval)):
            time.sleep(until_due(started, n, interval))
            t0 = time.perf_counter()
            os.pwrite(fd, block, (n * len(block)) % (64 << 20))
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    return times


async def data_directory(server_url: str) -> Path | None:
    """PostgreSQL's data directory, when it is on this machine and writable by us."""
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        path = Path(await conn.fetchval("SHOW data_directory"))
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()
    return path if await asyncio.to_thread(_writable, path) else None


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


async def statement_loop(database_url: str, *, batch: int, interval: float, seconds: float) -> None:
    await open_database(Settings(), database_url=database_url)
    monitor = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        conversations = await seed_conversations(max(batch * 20, 500))
        state = {}
        for conversation in conversations:
            snapshot = await chat.open_conversation(conversation.id, recent=1)
            assert snapshot is not None
            state[conversation.id] = [snapshot.parties, snapshot.last_seq]
        segment = int(await monitor.fetchval("SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'"))

        async def one(n: int) -> float:
            group = [conversations[(n * batch + i) % len(conversations)] for i in range(batch)]
            drafts = []
            for c in group:
                state[c.id][1] += 1
                drafts.append((c.id, [chat.Draft(state[c.id][1], c.users[n % 2], uuid.uuid4().hex,
                                                 "On my way, about ten minutes")], state[c.id][0]))
            t0 = time.perf_counter()
            await chat.append_batch(drafts, push_hold_s=1.0)
            return (time.perf_counter() - t0) * 1000

        for n in range(50):  # warm up: plans cached, pages touched
            await one(n)
        wal_now = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint"
        start_lsn = int(await monitor.fetchval(wal_now))
        times: list[float] = []
        slow_offsets: list[int] = []
        started = time.perf_counter()
        for n in range(int(seconds / interval)):
            await asyncio.sleep(until_due(started, n, interval))
            ms = await one(50 + n)
            times.append(ms)
            if ms > SLOW_MS:
                slow_offsets.append(int(await monitor.fetchval(wal_now)) % segment)
        wal = int(await monitor.fetchval(wal_now)) - start_lsn
        at_start = sum(offset < NEAR_SEGMENT_START for offset in slow_offsets)
        init_zero = await monitor.fetchval("SHOW wal_init_zero")
        print(figures(f"chat batch statement ({batch} messages, {1 / interval:,.0f}/s = "
                      f"{batch / interval:,.0f} msg/s, for {seconds:g} s)", times), flush=True)
        print(f"  WAL {wal / (len(times) * batch):,.0f} bytes per message ({wal / 2**20 / seconds:.1f} MiB/s, "
              f"a new {segment >> 20} MiB segment every {segment / max(wal / seconds, 1):.1f} s); "
              f"{at_start} of the {len(slow_offsets)} slow ones within {NEAR_SEGMENT_START >> 10} KiB of a "
              f"segment's start (wal_init_zero {init_zero})")
    finally:
        await monitor.close()
        await close_database()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000, help="messages/s")
    parser.add_argument("--batch", type=int, default=16, help="messages per statement (the shard's batch)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="where the disk loop writes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spotless-bench-") as tmp:
        embedded = None if os.environ.get("DATABASE_URL") else start_postgres(Path(tmp) / "pg")
        try:
            await measure(args, os.environ.get("DATABASE_URL") or embedded.url)  # type: ignore[union-attr]
        finally:
            if embedded is not None:
                embedded.stop()


async def measure(args: argparse.Namespace, server_url: str) -> None:
    interval = args.batch / args.rate
    directory = args.dir or await data_directory(server_url) or Path(tempfile.gettempdir())
    print(f"one batch every {interval * 1000:.1f} ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
          flush=True)
    disk = await asyncio.to_thread(disk_loop, directory, interval=interval, seconds=args.seconds)
    print(figures(f"disk (8 KiB write + fdatasync in {directory}, {1 / interval:,.0f}/s for {args.seconds:g} s)",
                  disk), flush=True)
    database_url, name = await create_database(server_url)
    try:
        await migrate(database_url)
        await statement_loop(database_url, batch=args.batch, interval=interval, seconds=args.seconds)
    finally:
        await drop_database(server_url, name)


if __name__ == "__main__":
    asyncio.run(main())
