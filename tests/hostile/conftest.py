"""An edge configured as production would be (payments on, CORS allow-list, HSTS, a database
password, secrets set) for the hostile-input and access tests, plus accounts of every role."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import STRONG_PASSWORD, TEST_ENV, Account, register, unique_email
from tests.fakes.stripe import API_KEY, StripeFake
from tests.stack import EdgeProcess, start_edge

ALLOWED_ORIGIN = "https://app.spotless.test"
HSTS_MAX_AGE_S = 31_536_000
# Values that must never reach a log line. The test database trusts local connections, so the
# password in its URL is carried along and ignored by the server.
SECRETS = {
    "SPOTLESS_STRIPE_WEBHOOK_SECRET": "whsec_hostile_" + secrets.token_hex(8),
    "SPOTLESS_ADMIN_SESSION_SECRET": "admin-session-" + secrets.token_hex(8),
}
DATABASE_PASSWORD = "pg-pass-" + secrets.token_hex(8)
# Set for every edge of the session (tests/conftest.py), so the fakes recognise them.
SHARED_SECRETS = {"facebook app secret": TEST_ENV["SPOTLESS_FACEBOOK_APP_SECRET"],
                  "stripe api key": API_KEY,
                  "realtime app secret": "dev-only-realtime-secret-change-me"}


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def hostile_stripe() -> Iterator[StripeFake]:
    fake = StripeFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def hostile_edge(services: dict[str, str], tmp_root: Path, hostile_stripe: StripeFake) -> Iterator[EdgeProcess]:
    log_dir = tmp_root / "hostile"
    log_dir.mkdir(exist_ok=True)
    process = start_edge({
        **services,
        **SECRETS,
        "DATABASE_URL": with_password(services["DATABASE_URL"], DATABASE_PASSWORD),
        "SPOTLESS_STRIPE_API_KEY": API_KEY,
        "SPOTLESS_STRIPE_API_BASE": hostile_stripe.url,
        "SPOTLESS_CORS_ORIGINS": f"{ALLOWED_ORIGIN},https://admin.spotless.test",
        "SPOTLESS_HSTS_MAX_AGE_S": str(HSTS_MAX_AGE_S),
        "SPOTLESS_LOGIN_RATE_PER_EMAIL": "100000",
        "SPOTLESS_LOG_LEVEL": "DEBUG",  # the most a misconfigured production could print
    }, log_dir)
    yield process
    process.stop()


@pytest.fixture
def hostile(hostile_edge: EdgeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile_edge.url, timeout=30) as client:
        yield client


async def make_staff(api: httpx.Client) -> Account:
    """An admin account: made through the public sign-up, promoted by the one promotion action."""
    from storage import accounts

    account = register(api, role="client", email=unique_email("staff"))
    await accounts.make_admin(email=account.email)
    return Account(account.id, account.email, STRONG_PASSWORD, account.token, "admin")
