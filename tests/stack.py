"""The real services a test session runs against.

PostgreSQL: the server at DATABASE_URL when it is set (each session makes and drops its own
database there), otherwise the embedded one. NATS: NATS_URL or the embedded server. Ray: a
local instance started once per session. Nothing here is a mock.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from cli.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from storage.db import asyncpg_dsn

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    database_url: str
    nats_url: str
    ray_address: str
    data_dir: Path
    cleanups: list = field(default_factory=list)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(asyncpg_dsn(url))
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


async def create_database(server_url: str) -> tuple[str, str]:
    name = f"spotless_test_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _with_database(server_url, name), name


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    pg = EmbeddedPostgres(data_dir / "pg", free_port())
    pg.start()
    return pg


def start_nats(data_dir: Path) -> EmbeddedNats:
    nats = EmbeddedNats(data_dir / "nats", free_port())
    nats.start()
    return nats


@dataclass
class EdgeProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        import signal

        from cli.embedded import stop_process

        stop_process(self.proc, sig=signal.SIGTERM, timeout_s=20)


def start_edge(env_overrides: dict[str, str], log_dir: Path, *, workers: int = 1) -> EdgeProcess:
    """Run `spotless edge` as its own process, as production does, and wait until it answers."""
    port = free_port()
    env = {**os.environ, **env_overrides}
    log = log_dir / f"edge-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "edge", "--port", str(port), "--workers", str(workers)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edge exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            ready = httpx.get(f"{url}/readyz", timeout=3)
            if ready.status_code == 200:
                return EdgeProcess(url, proc, log)
            last = ready.text
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"edge did not become ready ({last}):\n{log.read_text()[-3000:]}")
