"""What every answer carries (security headers, a request id, CORS for allowed origins only),
and what the logs never carry (secrets), against an edge configured as production would be."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from core.settings import Settings
from tests.conftest import register
from tests.fakes.stripe import API_KEY
from tests.hostile.conftest import (
    ALLOWED_ORIGIN,
    DATABASE_PASSWORD,
    HSTS_MAX_AGE_S,
    SECRETS,
    SHARED_SECRETS,
    with_password,
)

EVIL_ORIGIN = "https://evil.example"


def answers(client: httpx.Client, auth: dict[str, str]) -> dict[str, httpx.Response]:
    """One answer of each kind: data, a problem, a 401, a 404, the OpenAPI document."""
    return {
        "a catalogue read": client.get("/api/v1/services"),
        "a signed-in read": client.get("/api/v1/me", headers=auth),
        "a 401": client.get("/api/v1/me"),
        "a 404": client.get("/api/v1/nowhere"),
        "a 422": client.post("/api/v1/auth/login", json={"email": 1}),
        "the OpenAPI document": client.get("/api/v1/docs/openapi.json"),
    }


def test_every_answer_carries_the_security_headers(hostile):
    account = register(hostile, role="client")
    for what, response in answers(hostile, account.auth).items():
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", what
        assert headers["x-frame-options"] == "DENY", what
        assert headers["referrer-policy"] == "no-referrer", what
        assert "frame-ancestors 'none'" in headers["content-security-policy"], what
        assert headers["strict-transport-security"] == f"max-age={HSTS_MAX_AGE_S}; includeSubDomains", what
    # and what is for one user is never stored by a shared cache
    assert answers(hostile, account.auth)["a signed-in read"].headers["cache-control"] == "no-store"


def test_hsts_is_off_unless_configured(api):
    # the session's edge runs on defaults: plain http in development, so no HSTS
    response = api.get("/api/v1/services")
    assert "strict-transport-security" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("incoming, echoed", [
    ("checkout-7f3a.1", True),
    (str(uuid.uuid4()), True),
    ("x" * 129, False),
    ('abc"def', False),
    ("spaces are not ids", False),
    ("{\"level\": \"ERROR\"}", False),
])
def test_a_sane_request_id_is_echoed_and_anything_else_replaced(hostile, incoming, echoed):
    response = hostile.get("/api/v1/me", headers={"X-Request-ID": incoming})
    request_id = response.headers["x-request-id"]
    assert (request_id == incoming) is echoed
    assert response.json()["request_id"] == request_id
    if not echoed:
        assert uuid.UUID(request_id)


def preflight(client: httpx.Client, origin: str, method: str = "POST") -> httpx.Response:
    return client.options("/api/v1/bookings", headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type"})


def test_cors_answers_allowed_origins_only(hostile):
    # given an allow-list of two origins
    # when a browser on an allowed origin asks before a cross-origin POST, then it is allowed
    allowed = preflight(hostile, ALLOWED_ORIGIN)
    assert allowed.status_code in (200, 204)
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "origin" in allowed.headers.get("vary", "").lower()
    # bearer tokens, not cookies: credentials are never invited
    assert "access-control-allow-credentials" not in allowed.headers
    # and the answer itself names the origin and exposes the request id
    read = hostile.get("/api/v1/services", headers={"Origin": ALLOWED_ORIGIN})
    assert read.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in read.headers["access-control-expose-headers"].lower()
    # when any other origin asks, then nothing allows it
    for response in (preflight(hostile, EVIL_ORIGIN), hostile.get("/api/v1/services", headers={"Origin": EVIL_ORIGIN}),
                     preflight(hostile, "null"), preflight(hostile, ALLOWED_ORIGIN + ".evil.example")):
        assert "access-control-allow-origin" not in response.headers, response.headers


def test_cors_allows_no_origin_by_default(api):
    for origin in (ALLOWED_ORIGIN, EVIL_ORIGIN, "http://localhost:3000"):
        assert "access-control-allow-origin" not in preflight(api, origin).headers
        assert "access-control-allow-origin" not in api.get("/api/v1/services", headers={"Origin": origin}).headers


def test_settings_never_show_their_secrets():
    # given settings holding every kind of secret
    settings = Settings(
        database_url=with_password("postgresql://postgres@db.internal:5432/spotless", DATABASE_PASSWORD),
        smtp_url="smtps://mailer:smtp-pass-123@smtp.example:465", stripe_api_key=API_KEY,
        stripe_webhook_secret=SECRETS["SPOTLESS_STRIPE_WEBHOOK_SECRET"],
        admin_session_secret=SECRETS["SPOTLESS_ADMIN_SESSION_SECRET"],
        facebook_app_secret=SHARED_SECRETS["facebook app secret"])
    # when they are printed, as a traceback or a careless log line would
    shown = repr(settings) + str(settings) + f"{settings!r}"
    # then no secret is in the text, and the rest still is
    for secret in (DATABASE_PASSWORD, "smtp-pass-123", API_KEY, *SECRETS.values(), *SHARED_SECRETS.values()):
        assert secret not in shown
    assert "db.internal:5432/spotless" in shown and "smtp.example" in shown
    # and the values themselves are intact for the code that needs them
    assert settings.stripe_api_key == API_KEY and DATABASE_PASSWORD in settings.database_url


def test_logs_are_json_lines_with_request_ids_and_never_carry_secrets(hostile, hostile_edge, oauth_fake):
    # given traffic that signs in, fails to, pays, and is refused in every way
    client = register(hostile, role="client")
    cleaner = register(hostile, role="cleaner")
    for password in ("wrong password here", client.password):
        hostile.post("/api/v1/auth/login", json={"email": client.email, "password": password})
    assert hostile.post("/api/v1/payments/setup-intent", headers=client.auth).status_code == 201
    assert hostile.post("/api/v1/cleaner/payouts/onboarding", headers=cleaner.auth).status_code == 201
    hostile.post("/api/v1/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=bad"})
    hostile.post("/api/v1/auth/oauth/facebook", json={"access_token": oauth_fake.facebook_token(
        email=f"fb.{uuid.uuid4().hex[:8]}@example.com"), "role": "client", "device_name": "log test"})
    traced = hostile.post("/api/v1/auth/oauth/facebook", headers={"X-Request-ID": "trace-me-123"},
                          json={"access_token": "EAAG-unknown", "role": "client"})
    assert traced.status_code == 401 and traced.headers["x-request-id"] == "trace-me-123"
    hostile.post("/api/v1/broadcasting/auth", headers=client.auth,
                 data={"socket_id": "1.1", "channel_name": f"private-user.{client.id}"})
    hostile.get("/api/v1/me", headers={"Authorization": "Bearer 1|not-the-secret"})
    hostile.get("/api/v1/nowhere")
    # when the edge's log is read
    lines = [line for line in hostile_edge.log.read_text().splitlines() if line.strip()]
    # then every line is a JSON object with a request id field
    entries = []
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict) and "request_id" in entry, line
        entries.append(entry)
    # and what was logged while serving a request (here the calls to Facebook's Graph API, at
    # DEBUG) carries that request's id
    assert any(e["request_id"] == "trace-me-123" and e["logger"].startswith("httpx") for e in entries)
    # and no secret, nor the password or token of a user, appears anywhere in it
    text = "\n".join(lines)
    for name, secret in [*SECRETS.items(), ("database password", DATABASE_PASSWORD),
                         *SHARED_SECRETS.items(), ("a user's password", client.password),
                         ("a user's token", client.token.split("|")[1])]:
        assert secret not in text, f"the {name} is in the edge's log"
