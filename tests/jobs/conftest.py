"""Fixtures for job tests: fakes, and a way to run the relay and a worker in the background for
the length of a test. The NATS connection with the session's streams (`nc`, `jetstream`) is in
tests/conftest.py, since realtime and edge tests run jobs too.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from core.settings import Settings
from jobs.relay import run_relay
from jobs.worker import Worker, WorkerKind
from tests.fakes.fcm import FcmFake
from tests.fakes.smtp import SmtpFake


@pytest.fixture
def test_type() -> str:
    """An event type no other test uses, so each test's consumer sees only its own jobs."""
    return f"test.t{secrets.token_hex(4)}"


@pytest.fixture
def kind() -> str:
    return f"test_{secrets.token_hex(4)}"


@contextlib.asynccontextmanager
async def running(*loops: Callable[[asyncio.Event], Awaitable[Any]]) -> AsyncIterator[asyncio.Event]:
    """Run loops that take a stop event in the background; stop them and wait on exit."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop(stop)) for loop in loops]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def relay_loop(nc: Client, settings: Settings) -> Callable[[asyncio.Event], Awaitable[None]]:
    return lambda stop: run_relay(nc, settings, stop)


def worker_loop(nc: Client, settings: Settings, spec: WorkerKind) -> Callable[[asyncio.Event], Awaitable[None]]:
    return lambda stop: Worker(nc, settings, spec).run(stop)


async def eventually(check: Callable[[], Any], *, timeout_s: float = 20.0) -> None:
    """Wait until `check()` (sync or async) is true."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def fcm_fake() -> Iterator[FcmFake]:
    fake = FcmFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def smtp_fake() -> Iterator[SmtpFake]:
    fake = SmtpFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def push_settings(settings: Settings, fcm_fake: FcmFake, tmp_path: Path) -> Settings:
    return settings.model_copy(update=fcm_fake.settings_update(tmp_path))
