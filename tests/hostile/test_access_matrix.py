"""Who may call what, for every route of the app, read from its route table: a new route is
covered by these tests as soon as it exists, or the classification test fails naming it.

- without a token, with a garbage, revoked or expired token, or as a suspended user: 401;
- as a role the route does not admit (a client acting as a cleaner): 403 `wrong_role`;
- with the id of something the caller is not a party to: 404, as if it did not exist.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sanic import Sanic

from core.clock import utcnow
from edge.auth import required_roles
from storage.models import PersonalAccessToken
from tests.conftest import register
from tests.edge.test_bookings import bookable, booking_body
from tests.hostile.conftest import make_staff
from tests.storage.test_bookings import tomorrow_at

ROLES = ("client", "cleaner", "admin")
# Routes anyone may call, and why they need no token. A new public route must be added here.
PUBLIC = {
    "/api/v1/auth/register": "signing up",
    "/api/v1/auth/login": "signing in",
    "/api/v1/auth/oauth/<provider:str>": "signing in with a provider",
    "/api/v1/auth/password/forgot": "the user has lost their password",
    "/api/v1/auth/password/reset": "authorised by the e-mailed one-time token",
    "/api/v1/auth/email/verify": "authorised by the e-mailed one-time token",
    "/api/v1/services": "the public catalogue",
    "/api/v1/content": "public help and legal pages",
    "/api/v1/content/<slug:str>": "public help and legal pages",
    "/api/v1/cleaners/<cleaner_id:str>/reviews": "a cleaner's reviews are public, like their profile",
    "/api/v1/cleaners/<cleaner_id:str>/photo": "a verified cleaner's photo is shown to anyone searching",
    "/api/v1/webhooks/stripe": "authorised by Stripe's signature",
    "/apps/<app_id:str>/events": "authorised by the Pusher request signature",
    "/apps/<app_id:str>/batch_events": "authorised by the Pusher request signature",
    "/apps/<app_id:str>/channels": "authorised by the Pusher request signature",
    "/apps/<app_id:str>/channels/<channel_name:str>": "authorised by the Pusher request signature",
    "/apps/<app_id:str>/channels/<channel_name:str>/users": "authorised by the Pusher request signature",
    "/apps/<app_id:str>/users/<user_id:str>/terminate_connections": "authorised by the Pusher request signature",
    "/healthz": "operations", "/readyz": "operations", "/metrics": "operations",
}
# Path parameters that name no one's property, with a value to send.
NOT_IDS = {"move": "cancel", "provider": "google", "slug": "about", "app_id": "1001",
           "channel_name": "presence-lobby"}
# Ids of things that belong to someone; what each names in the world built below.
IDS = {"booking_id", "raw_id", "token_id", "token", "evidence_id", "user_id", "cleaner_id", "document_id",
       "attachment_id"}
# What a non-party sends, so the refusal cannot be a 422 about the body.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/bookings/<booking_id:str>/<move:str>"): {"reason": "changed my plans"},
    ("POST", "/api/v1/bookings/<booking_id:str>/review"): {"rating": 5, "text": "spotless"},
    ("POST", "/api/v1/bookings/<booking_id:str>/review/reply"): {"text": "thank you"},
    ("POST", "/api/v1/conversations/<raw_id:str>/messages"): {"client_msg_id": "m-1", "body": "hello"},
    ("POST", "/api/v1/conversations/<raw_id:str>/read"): {"seq": 0},
}
# Requests a party makes successfully with the same ids: proof that the 404s are about the
# caller, not about ids that name nothing.
PARTY_CONTROLS = [
    ("GET", "/api/v1/bookings/<booking_id:str>"),
    ("GET", "/api/v1/bookings/<booking_id:str>/evidence"),
    ("GET", "/api/v1/conversations/<raw_id:str>/messages"),
    ("DELETE", "/api/v1/me/devices/<token:str>"),
    ("DELETE", "/api/v1/me/tokens/<token_id:str>"),
]
PARAM = re.compile(r"<([a-z_]+)(?::[a-z]+)?>")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # Sanic's form, /api/v1/bookings/<booking_id:str>
    roles: tuple[str, ...] | None  # None: public; (): any signed-in user

    @property
    def params(self) -> list[str]:
        return PARAM.findall(self.path)

    def url(self, values: dict[str, str]) -> str:
        return PARAM.sub(lambda m: str(values[m.group(1)]), self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def route_table() -> list[Route]:
    """Every HTTP route of the edge as create_app builds it (docs pages and sockets aside)."""
    from edge.app import create_app

    app = Sanic.get_app("spotless") if "spotless" in Sanic._app_registry else create_app()
    routes = []
    for route in app.router.routes:
        if route.extra.websocket or route.name.startswith("spotless.openapi."):
            continue
        roles = required_roles(route.handler)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            routes.append(Route(method, "/" + route.path.lstrip("/"),
                                None if roles is None else tuple(str(r) for r in roles)))
    return sorted(routes, key=str)


ROUTES = route_table()
SIGNED_IN = [r for r in ROUTES if r.roles is not None]


def send(api: httpx.Client, route: Route, values: dict[str, str], auth: dict[str, str] | None,
         ) -> httpx.Response:
    body = BODIES.get((route.method, route.path))
    return api.request(route.method, route.url(values), headers=auth or {},
                       json=body if body is not None else None)


def assert_problem(response: httpx.Response, status: int, route: Route, who: str) -> dict[str, Any]:
    assert response.status_code == status, f"{route} as {who}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/problem+json"), str(route)
    body: dict[str, Any] = response.json()
    return body


def placeholder_values() -> dict[str, str]:
    values = {name: str(uuid.uuid4()) for name in IDS}
    values["token_id"] = "1"
    return {**values, **NOT_IDS}


def test_every_route_is_in_the_matrix():
    # given the route table, then each route is signed-in (with its roles) or known to be public,
    # and every path parameter is known to be an id or not
    unclassified = [str(r) for r in ROUTES if r.roles is None and r.path not in PUBLIC]
    assert not unclassified, ("public routes nobody decided on (add @authenticated, or add them to "
                              f"PUBLIC with the reason): {unclassified}")
    unknown = sorted({f"{p} in {r}" for r in ROUTES for p in r.params if p not in IDS and p not in NOT_IDS})
    assert not unknown, f"path parameters the matrix does not know (add them to IDS or NOT_IDS): {unknown}"
    assert len(SIGNED_IN) >= 40


@pytest.fixture(scope="module")
def api(edge):
    """A client for the module's fixtures (the shared `api` fixture is per test)."""
    with httpx.Client(base_url=edge.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def make_account(api):
    return lambda **kwargs: register(api, **kwargs)


@pytest.fixture(scope="module")
async def people(api, db, make_account):
    """One signed-in account of each role, plus a suspended one, a revoked and an expired token."""
    accounts = {"client": make_account(role="client"), "cleaner": make_account(role="cleaner"),
                "admin": await make_staff(api)}
    suspended = make_account(role="client")
    suspend = api.post(f"/api/v1/admin/users/{suspended.id}/suspend", headers=accounts["admin"].auth,
                       json={"reason": "matrix test"})
    assert suspend.status_code == 200, suspend.text
    revoked = make_account(role="cleaner")
    assert api.post("/api/v1/auth/logout", headers=revoked.auth).status_code == 204
    expired = make_account(role="client")
    await PersonalAccessToken.filter(id=int(expired.token.split("|")[0])).update(
        expires_at=utcnow() - timedelta(seconds=1))
    return accounts, {"no token": None, "a garbage token": {"Authorization": "Bearer 1|not-a-token"},
                      "a revoked token": revoked.auth, "an expired token": expired.auth,
                      "a suspended user": suspended.auth}


@pytest.mark.parametrize("who", ["no token", "a garbage token", "a revoked token", "an expired token",
                                 "a suspended user"])
def test_without_a_valid_token_every_signed_in_route_is_401(api, people, who):
    _, bad_auth = people
    for route in SIGNED_IN:
        # when the route is called without a valid session, then 401 and a way to sign in
        response = send(api, route, placeholder_values(), bad_auth[who])
        problem = assert_problem(response, 401, route, who)
        assert response.headers["www-authenticate"].startswith("Bearer"), str(route)
        if who == "a suspended user":
            assert problem["code"] == "account_suspended", str(route)


def test_a_role_a_route_does_not_admit_gets_403(api, people):
    accounts, _ = people
    checked = 0
    for route in SIGNED_IN:
        for role in ROLES:
            if not route.roles or role in route.roles:
                continue
            # when a client acts as a cleaner (or either as staff), then 403 wrong_role
            problem = assert_problem(send(api, route, placeholder_values(), accounts[role].auth), 403, route, role)
            assert problem["code"] == "wrong_role", str(route)
            checked += 1
    assert checked >= 30


@pytest.fixture(scope="module")
async def affair(api, db, settings, make_account):
    """A booking between a client and a cleaner, its conversation, the client's extra token and
    device; and two outsiders (a client and a cleaner) who are party to none of it."""
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    made = api.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, tomorrow_at(10, days=3)))
    assert made.status_code == 201, made.text
    conversations = api.get("/api/v1/conversations", headers=client.auth).json()["data"]
    assert conversations, "a booking opens a conversation between its parties"
    login = api.post("/api/v1/auth/login", json={"email": client.email, "password": client.password,
                                                 "device_name": "second phone"})
    device = api.post("/api/v1/me/devices", headers=client.auth, json={"platform": "android",
                                                                        "token": "fcm-" + uuid.uuid4().hex})
    assert login.status_code == 200 and device.status_code == 201, (login.text, device.text)
    values = {**placeholder_values(), "booking_id": made.json()["booking"]["id"],
              "raw_id": str(conversations[0]["id"]), "token_id": str(login.json()["token_id"]),
              "token": device.json()["token"]}
    outsiders = {"client": make_account(role="client"), "cleaner": make_account(role="cleaner")}
    return client, values, outsiders


def test_someone_who_is_not_a_party_gets_404(api, affair):
    party, values, outsiders = affair
    checked = 0
    for route in SIGNED_IN:
        if route.roles == ("admin",) or not any(p in IDS for p in route.params):
            continue
        for role, outsider in outsiders.items():
            if route.roles and role not in route.roles:
                continue
            # when someone with no part in it names the booking, conversation, token or device,
            # then it does not exist for them
            assert_problem(send(api, route, values, outsider.auth), 404, route, f"an outsider {role}")
            checked += 1
    assert checked >= 20
    # and the same ids work for the party, so the 404s were about who asked
    for method, path in PARTY_CONTROLS:
        route = Route(method, path, ())
        response = send(api, route, values, party.auth)
        assert response.is_success, f"{route} as the party: {response.status_code} {response.text[:300]}"
