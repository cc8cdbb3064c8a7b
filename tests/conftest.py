"""Session-wide real services (PostgreSQL, NATS, Ray, a running edge) and factories."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client

from actors.runtime import start_local_ray
from core.events import dead_letter_stream, jobs_stream
from core.settings import Settings, get_settings
from tests.fakes.oauth import OAuthFake
from tests.fakes.stripe import StripeFake
from tests.stack import (
    EdgeProcess,
    create_database,
    drop_database,
    start_edge,
    start_nats,
    start_postgres,
)

CHROMIUM = Path("/usr/bin/chromium")  # the Makefile's CHROMIUM

# Settings every process of the test session shares (the edge subprocess inherits them).
# The Pusher apps of every edge in the session (the first is the platform's own, which shard
# actors publish chat and presence as); the realtime tests exercise their limits.
REALTIME_APPS = [
    {"id": "100001", "key": "spotless-key", "secret": "test-realtime-secret",
     "max_message_bytes": 2000, "max_subscriptions_per_socket": 6, "client_events_per_s": 5},
    {"id": "100002", "key": "other-key", "secret": "other-secret"},
    {"id": "100003", "key": "tiny-key", "secret": "tiny-secret", "max_connections": 1},
    {"id": "100004", "key": "web-key", "secret": "web-secret",
     "allowed_origins": ["app.spotless.example", "*.staff.spotless.example", "http://localhost:5173"]},
]
TEST_ENV = {
    "SPOTLESS_PASSWORD_HASH_TIME_COST": "1",
    "SPOTLESS_PASSWORD_HASH_MEMORY_KIB": "8192",
    "SPOTLESS_REGISTER_RATE_PER_IP": "100000",
    "SPOTLESS_LOGIN_RATE_PER_IP": "100000",
    "SPOTLESS_LOGIN_RATE_PER_EMAIL": "5",
    "SPOTLESS_LOG_JSON": "true",
    # Shard actors are shared by every edge of the session and keep the settings of the process
    # that created them, so every edge must agree on these.
    "SPOTLESS_REALTIME_WORKER_HEARTBEAT_S": "1",
    "SPOTLESS_CONVERSATION_SHARDS": "2",
    "SPOTLESS_REALTIME_APPS": json.dumps(REALTIME_APPS),
    "SPOTLESS_GOOGLE_CLIENT_IDS": "spotless-web.apps.googleusercontent.com,spotless-ios.apps.googleusercontent.com",
    "SPOTLESS_APPLE_CLIENT_IDS": "dev.spotless.app",
    "SPOTLESS_FACEBOOK_APP_ID": "424242",
    "SPOTLESS_FACEBOOK_APP_SECRET": "facebook-app-secret-for-tests",
}


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[StripeFake]:
    """A local Stripe API (tests/fakes/stripe.py) for the modules that take payments: its own per
    module, so what one module's tests made (customers, intents, refunds) never shows in another's."""
    fake = StripeFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="spotless-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's Chromium, which the browser tests drive through Playwright (it never downloads one)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
                    "(or run `apt-get install -y chromium` as root)")
    return CHROMIUM


@pytest.fixture(scope="session")
def oauth_fake() -> Iterator[OAuthFake]:
    fake = OAuthFake()
    fake.start()
    yield fake
    fake.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def services(tmp_root: Path, oauth_fake: OAuthFake) -> AsyncIterator[dict[str, str]]:
    """Real PostgreSQL, NATS and Ray; returns the environment every Spotless process gets."""
    import ray

    from storage.migrate import migrate

    stoppers: list[Any] = []
    server_url = os.environ.get("DATABASE_URL", "")
    if server_url:
        database_url, db_name = await create_database(server_url)
    else:
        pg = start_postgres(tmp_root)
        stoppers.append(pg.stop)
        database_url, db_name = await create_database(pg.url)
        server_url = pg.url
    nats_url = os.environ.get("NATS_URL", "")
    if not nats_url:
        nats = start_nats(tmp_root)
        stoppers.append(nats.stop)
        nats_url = nats.url
    start_local_ray(f"spotless-test-{secrets.token_hex(3)}", num_cpus=2)
    ray_address = ray.get_runtime_context().gcs_address
    await migrate(database_url)
    env = {
        **TEST_ENV,
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "RAY_ADDRESS": ray_address,
        "SPOTLESS_DATA_DIR": str(tmp_root / "data"),
        # The NATS server may be shared with other test runs: JetStream names are per session.
        "SPOTLESS_JETSTREAM_PREFIX": f"spotless_test_{secrets.token_hex(4)}",
        "SPOTLESS_RAY_NAMESPACE": ray.get_runtime_context().namespace,
        **oauth_fake.settings_env(),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        ray.shutdown()
        await drop_database(server_url, db_name)
        for stop in reversed(stoppers):
            stop()


@pytest.fixture(scope="session")
def settings(services: dict[str, str]) -> Settings:
    return get_settings()


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=False)
async def db(services: dict[str, str], settings: Settings) -> AsyncIterator[None]:
    """The test process's own Tortoise connection to the session database."""
    from storage.db import close_database, open_database

    await open_database(settings)
    yield
    await close_database()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def jetstream(services: dict[str, str], settings: Settings) -> AsyncIterator[None]:
    """The session's JetStream streams (jobs and dead letters), deleted at the end so the shared
    server keeps nothing of ours."""
    from jobs.runner import connect_nats
    from jobs.streams import ensure_streams

    nc = await connect_nats(settings, name="spotless-test-streams")
    await ensure_streams(nc.jetstream(), settings)
    yield
    js = nc.jetstream()
    for stream in (jobs_stream(settings.jetstream_prefix), dead_letter_stream(settings.jetstream_prefix)):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
    await nc.close()


@pytest_asyncio.fixture
async def nc(jetstream: None, db: None, settings: Settings) -> AsyncIterator[Client]:
    """A NATS connection of the test's own, with the session's streams in place."""
    from jobs.runner import connect_nats

    client = await connect_nats(settings, name="spotless-test-jobs")
    yield client
    await client.close()


@pytest.fixture(scope="session")
def edge(services: dict[str, str], tmp_root: Path) -> Iterator[EdgeProcess]:
    process = start_edge(services, tmp_root)
    yield process
    process.stop()
    # Kept for reading after a failure; tests/artifacts is ignored by git.
    artifacts = Path(__file__).parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(process.log, artifacts / "edge.log")


@pytest.fixture
def api(edge: EdgeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=edge.url, timeout=30) as client:
        yield client


# --- factories: real accounts made through the public API ---

STRONG_PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    id: str
    email: str
    password: str
    token: str
    role: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}.{secrets.token_hex(5)}@example.com"


def register(api: httpx.Client, *, role: str = "client", email: str | None = None,
             password: str = STRONG_PASSWORD, name: str = "Test Person") -> Account:
    email = email or unique_email(role)
    response = api.post("/api/v1/auth/register",
                        json={"email": email, "password": password, "name": name, "role": role,
                              "device_name": "pytest"})
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(body["user"]["id"], body["user"]["email"], password, body["token"], role)


@pytest.fixture
def make_account(api: httpx.Client) -> Any:
    def make(**kwargs: Any) -> Account:
        return register(api, **kwargs)

    return make
