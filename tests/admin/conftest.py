"""The admin as production runs it (`spotless admin` under uvicorn), and staff who use it.

`dashboard` is a browser-like httpx client: it keeps the session cookie, reads the CSRF token
from the login form as a browser would, and calls the same endpoints starlette-admin's pages
and scripts call (forms, `/_api/<view>/action`, `/_api/<view>/row-action`, relation lookup).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from nats.js import JetStreamContext

from cli.embedded import free_port, stop_process
from core.settings import Settings
from jobs.streams import ensure_streams
from storage.accounts import create_user
from storage.models import User
from tests.conftest import STRONG_PASSWORD, unique_email
from tests.stack import ROOT

CSRF_FIELD = re.compile(r'name="csrftoken" value="([^"]+)"')


@dataclass
class AdminProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.proc, sig=signal.SIGTERM, timeout_s=20)


def start_admin(env_overrides: dict[str, str], log_dir: Path) -> AdminProcess:
    """Run `spotless admin` as its own process and wait until it answers."""
    port = free_port()
    log = log_dir / f"admin-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "admin", "--port", str(port)],
            env={**os.environ, **env_overrides}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"admin exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=3).status_code == 200:
                return AdminProcess(url, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"admin did not become ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def admin_server(services: dict[str, str], tmp_root: Path) -> Iterator[AdminProcess]:
    process = start_admin(services, tmp_root)
    yield process
    process.stop()


@dataclass
class Person:
    user: User
    password: str

    @property
    def id(self) -> str:
        return str(self.user.id)

    @property
    def email(self) -> str:
        return self.user.email


MakePerson = Callable[..., Awaitable[Person]]


@pytest.fixture
def make_person(db: None, settings: Settings) -> MakePerson:
    """An account of any role, made through storage.accounts.create_user."""

    async def make(*, role: str = "admin", name: str = "Sam Staff", email: str | None = None) -> Person:
        user = await create_user(email=email or unique_email(role), password=STRONG_PASSWORD,
                                 name=name, role=role, settings=settings, verified=True)
        return Person(user, STRONG_PASSWORD)

    return make


@pytest_asyncio.fixture
async def staff(make_person: MakePerson) -> Person:
    return await make_person(role="admin", name="Olive Operations")


class Dashboard:
    """What a staff member's browser does, request by request."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def form_token(self, path: str = "/admin/login") -> str:
        page = await self.client.get(path)
        assert page.status_code == 200, page.text
        match = CSRF_FIELD.search(page.text)
        assert match, f"no CSRF field on {path}"
        return match.group(1)

    @property
    def cookie_token(self) -> str:
        """The token starlette-admin's scripts read from their cookie for X-CSRFToken."""
        return self.client.cookies["starlette_admin_csrftoken"]

    async def log_in(self, email: str, password: str) -> httpx.Response:
        token = await self.form_token()
        return await self.client.post("/admin/login", data={
            "username": email, "password": password, "csrftoken": token})

    async def sign_in(self, person: Person) -> None:
        response = await self.log_in(person.email, person.password)
        assert response.status_code == 303, response.text

    async def row_action(self, view: str, name: str, pk: str, *, form: dict[str, str] | None = None,
                         token: str | None = None) -> httpx.Response:
        return await self.client.post(
            f"/admin/_api/{view}/row-action", params={"name": name, "pk": pk},
            files={k: (None, v) for k, v in (form or {}).items()} or None,
            headers={"X-CSRFToken": self.cookie_token if token is None else token})

    async def batch_action(self, view: str, name: str, pks: list[str], *,
                           form: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(
            f"/admin/_api/{view}/action", params=[("name", name), *(("pks", pk) for pk in pks)],
            files={k: (None, v) for k, v in (form or {}).items()} or None,
            headers={"X-CSRFToken": self.cookie_token})

    async def submit_form(self, path: str, params: dict[str, str] | None = None,
                          **fields: Any) -> httpx.Response:
        token = await self.form_token(path + ("?" + str(httpx.QueryParams(params)) if params else ""))
        return await self.client.post(path, params=params, data={**fields, "csrftoken": token})


@pytest_asyncio.fixture
async def browser(admin_server: AdminProcess) -> AsyncIterator[Dashboard]:
    """A browser with no session yet."""
    async with httpx.AsyncClient(base_url=admin_server.url, timeout=30) as client:
        yield Dashboard(client)


@pytest_asyncio.fixture
async def edge_api(edge: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The REST API as the mobile apps call it (the session's running edge)."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def dashboard(browser: Dashboard, staff: Person) -> Dashboard:
    """A browser signed in as `staff`."""
    await browser.sign_in(staff)
    return browser


@pytest_asyncio.fixture
async def js(settings: Settings) -> AsyncIterator[JetStreamContext]:
    """The session's JetStream, with the streams every worker creates when it starts."""
    nc = await nats.connect(settings.nats_url)
    context = nc.jetstream()
    await ensure_streams(context, settings)
    yield context
    await nc.drain()
