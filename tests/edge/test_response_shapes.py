"""Every successful answer of the API, held to the schema that the served OpenAPI document gives
for its operation and status: real flows (accounts, a verified cleaner, search, a paid booking
walked through its moves, chat, evidence, reviews, realtime) on an edge with payments on, each
2xx answer validated with `jsonschema` against the document, then a check that every operation
and every success status the document lists was seen. The document's objects forbid unknown
fields, so a field added to an answer without its shape fails here."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import jsonschema
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from core.clock import utcnow
from core.events import EventType
from core.ids import new_id
from jobs.invoices import invoice_booking
from jobs.worker import Job
from storage import accounts
from storage.files import file_store
from storage.models import Booking, PayoutAccount
from tests.conftest import REALTIME_APPS, STRONG_PASSWORD, Account, register, unique_email
from tests.core.test_supply import pdf_bytes
from tests.edge.test_content import write_page  # noqa: F401  (a fixture)
from tests.edge.test_evidence import nats_client, run_images  # noqa: F401  (a fixture, and a helper)
from tests.edge.test_payments import WEBHOOK_SECRET, paid_edge  # noqa: F401  (a fixture)
from tests.edge.test_search import somewhere, square
from tests.fakes.stripe import StripeFake, event, signed
from tests.jobs.test_images import photo
from tests.mailbox import messages_to, token_in
from tests.stack import EdgeProcess
from tests.storage.test_bookings import starting_soon, tomorrow_at

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
SUCCESS = ("1", "2")


@dataclass
class Contract:
    """The served document, and every (method, path template, status) whose answer held to it."""

    document: dict[str, Any]
    seen: set[tuple[str, str, int]] = field(default_factory=set)
    answers: dict[tuple[str, str, int], Any] = field(default_factory=dict)  # the last JSON of each

    def documented(self, method: str, template: str, status: int) -> dict[str, Any]:
        responses = self.document["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {template} answered {status}, not in {sorted(responses)}"
        documented: dict[str, Any] = responses[str(status)]
        return documented

    def hold(self, response: httpx.Response, template: str) -> httpx.Response:
        """Assert `response` is a success that the document describes exactly; record it."""
        method = response.request.method
        assert response.is_success, f"{method} {template}: {response.status_code} {response.text[:800]}"
        documented = self.documented(method, template, response.status_code)
        content = documented.get("content")
        if not content:
            assert response.content == b"", f"{method} {template} documents no body but sent one"
        else:
            media_type = response.headers["content-type"].split(";")[0].strip()
            assert media_type in content, f"{method} {template} answered {media_type}, not one of {sorted(content)}"
            schema = content[media_type]["schema"]
            if media_type == "application/json":
                jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)
                self.answers[(method, template, response.status_code)] = response.json()
            elif schema.get("format") == "binary":
                assert response.content, f"{method} {template} sent an empty file"
            else:
                assert schema == {"type": "string"} and response.text
        self.seen.add((method, template, response.status_code))
        return response

    def success_statuses(self) -> set[tuple[str, str, int]]:
        """Every success status of every operation that the document lists."""
        return {(method.upper(), path, int(status))
                for path, operations in self.document["paths"].items()
                for method, operation in operations.items() if method in HTTP_METHODS
                for status in operation["responses"] if str(status).startswith(SUCCESS)}


@dataclass
class World:
    """What the flows build and later ones use: one verified cleaner, a client and staff."""

    cleaner: Account
    client: Account
    staff: dict[str, str]
    place: tuple[float, float]
    booking_id: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def contract(paid_edge: EdgeProcess) -> Contract:  # noqa: F811
    return Contract(httpx.get(f"{paid_edge.url}/api/v1/docs/openapi.json", timeout=30).json())


@pytest.fixture
def pay(paid_edge: EdgeProcess) -> Any:  # noqa: F811
    with httpx.Client(base_url=paid_edge.url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def world(paid_edge: EdgeProcess, db: None, settings: Any) -> World:  # noqa: F811
    with httpx.Client(base_url=paid_edge.url, timeout=30) as api:
        email = unique_email("staff")
        await accounts.create_user(email=email, password=STRONG_PASSWORD, name="Rev Iewer", role="admin",
                                   settings=settings, verified=True)
        return World(register(api, role="cleaner", name="Cleo Cleaner"), register(api, name="Cora Client"),
                     signed_in(api, email), somewhere())


def signed_in(api: httpx.Client, email: str, password: str = STRONG_PASSWORD) -> dict[str, str]:
    """The Authorization header of a fresh sign-in."""
    login = api.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['token']}"}


def call(contract: Contract, api: httpx.Client, method: str, template: str, *, auth: dict[str, str] | None = None,
         path: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    """Send a request to the operation at `template` and hold its answer to the document."""
    url = template.format(**(path or {}))
    headers = {**(auth or {}), **kwargs.pop("headers", {})}
    return contract.hold(api.request(method, url, headers=headers, **kwargs), template)


def signed_for_pusher(app: dict[str, Any], path: str, payload: Any, method: str = "POST",
                      query_params: dict[str, str] | None = None) -> tuple[str, bytes]:
    """The URL and body of an HTTP API call (a GET without a body), signed as Pusher's server
    libraries sign it."""
    body = json.dumps(payload).encode() if payload is not None else b""
    params = {"auth_key": app["key"], "auth_timestamp": str(int(time.time())), "auth_version": "1.0",
              "body_md5": hashlib.md5(body).hexdigest(), **(query_params or {})}
    query = "&".join(f"{name}={params[name]}" for name in sorted(params))
    signature = hmac.new(app["secret"].encode(), f"{method}\n{path}\n{query}".encode(), hashlib.sha256).hexdigest()
    return f"{path}?{query}&auth_signature={signature}", body


# --- the operations ---


async def test_account_answers_match_the_document(contract, pay, db, settings, oauth_fake, write_page):  # noqa: F811
    def c(method, template, **kwargs):
        return call(contract, pay, method, template, **kwargs)

    # given a new account, signed in on a second device
    email = unique_email("shape")
    made = c("POST", "/api/v1/auth/register", json={"email": email, "password": STRONG_PASSWORD, "name": "Sha Pe",
                                                    "role": "client"}).json()
    auth = {"Authorization": f"Bearer {made['token']}"}
    second = c("POST", "/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD}).json()
    # when it reads itself, its devices, and manages them
    c("GET", "/api/v1/me", auth=auth)
    c("GET", "/api/v1/me/tokens", auth=auth, params={"limit": 1})
    c("DELETE", "/api/v1/me/tokens/{token_id}", auth=auth, path={"token_id": str(second["token_id"])})
    c("POST", "/api/v1/auth/email/verification-notification", auth=auth)
    token = token_in([m for m in await messages_to(settings, email)
                      if m["Subject"] == "Confirm your e-mail address"][0])
    c("POST", "/api/v1/auth/email/verify", json={"token": token})
    c("POST", "/api/v1/me/devices", auth=auth, json={"platform": "android", "token": "fcm-" + secrets.token_hex(8)})
    c("GET", "/api/v1/me/notification-preferences", auth=auth)
    c("PUT", "/api/v1/me/notification-preferences", auth=auth, json={"marketing": False})
    registered = pay.post("/api/v1/me/devices", headers=auth, json={"platform": "ios", "token": "gone-device"})
    assert registered.status_code == 201
    c("DELETE", "/api/v1/me/devices/{token}", auth=auth, path={"token": "gone-device"})
    # and staff suspend and reinstate it
    staff_email = unique_email("staff")
    await accounts.create_user(email=staff_email, password=STRONG_PASSWORD, name="Sta Ff", role="admin",
                               settings=settings, verified=True)
    staff = signed_in(pay, staff_email)
    c("POST", "/api/v1/admin/users/{user_id}/suspend", auth=staff, path={"user_id": made["user"]["id"]},
      json={"reason": "checking shapes"})
    c("POST", "/api/v1/admin/users/{user_id}/reinstate", auth=staff, path={"user_id": made["user"]["id"]})
    # and it forgets its password, resets it, signs in again and out everywhere
    c("POST", "/api/v1/auth/password/forgot", json={"email": email})
    reset = token_in([m for m in await messages_to(settings, email)
                      if m["Subject"] == "Reset your Spotless password"][0])
    c("POST", "/api/v1/auth/password/reset", json={"token": reset, "password": "a brand new passphrase"})
    again = c("POST", "/api/v1/auth/login", json={"email": email, "password": "a brand new passphrase"}).json()
    c("POST", "/api/v1/auth/logout", auth={"Authorization": f"Bearer {again['token']}"})
    c("POST", "/api/v1/auth/logout-all", auth=signed_in(pay, email, "a brand new passphrase"))
    # and someone signs up with Google (201), then signs in again (200)
    social = unique_email("google")
    for _ in range(2):
        c("POST", "/api/v1/auth/oauth/{provider}", path={"provider": "google"},
          json={"id_token": oauth_fake.id_token("google", sub=f"sub-{social}", email=social)})
    # and the public pages, the catalogue and the operations endpoints answer as documented
    page = await write_page("shape-help", audience="client")
    c("GET", "/api/v1/content", params={"audience": "client"})
    c("GET", "/api/v1/content/{slug}", path={"slug": page.slug})
    c("GET", "/api/v1/services")
    c("GET", "/healthz")
    c("GET", "/readyz")
    c("GET", "/metrics")


async def test_cleaner_supply_answers_match_the_document(contract, pay, world, nats_client, settings):  # noqa: F811
    def c(method, template, **kwargs):
        return call(contract, pay, method, template, **kwargs)

    cleaner, lat, lng = world.cleaner, *world.place
    # given a cleaner who fills in their profile, schedule and area
    c("GET", "/api/v1/cleaner/profile", auth=cleaner.auth)
    c("PUT", "/api/v1/cleaner/profile", auth=cleaner.auth, json={
        "bio": "Tidy.", "time_zone": "UTC", "travel_buffer_minutes": 30,
        "services": [{"service_id": "standard", "hourly_rate_minor": 2000}]})
    day_off = (utcnow() + timedelta(days=40)).date().isoformat()
    c("PUT", "/api/v1/cleaner/availability", auth=cleaner.auth, json={
        "weekly": [{"weekday": d, "start_minute": 0, "end_minute": 1440} for d in range(7)],
        "exceptions": [{"date": day_off, "kind": "off"}]})
    c("GET", "/api/v1/cleaner/availability", auth=cleaner.auth)
    c("PUT", "/api/v1/cleaner/service-area", auth=cleaner.auth, json=square(lat, lng))
    c("GET", "/api/v1/cleaner/service-area", auth=cleaner.auth)
    # when they send an identity document, which staff find, read and approve
    c("POST", "/api/v1/cleaner/verification", auth=cleaner.auth,
      files={"document": ("id.pdf", pdf_bytes(), "application/pdf")})
    verification = c("GET", "/api/v1/cleaner/verification", auth=cleaner.auth).json()
    c("GET", "/api/v1/admin/cleaners", auth=world.staff, params={"verification": "pending", "limit": 100})
    c("GET", "/api/v1/admin/cleaners/{cleaner_id}/verification/documents/{document_id}", auth=world.staff,
      path={"cleaner_id": cleaner.id, "document_id": verification["documents"][0]["id"]})
    c("POST", "/api/v1/admin/cleaners/{cleaner_id}/verification", auth=world.staff,
      path={"cleaner_id": cleaner.id}, json={"decision": "approve"})
    # and upload a photo, which the images job processes
    c("POST", "/api/v1/cleaner/profile/photo", auth=cleaner.auth, files={"photo": ("me.jpg", photo(), "image/jpeg")})
    await run_images(nats_client, settings)
    shown = c("GET", "/api/v1/cleaner/profile", auth=cleaner.auth).json()["profile"]["photo"]["shown"]
    assert shown is not None
    # then anyone gets the photo and its thumbnails, and a client finds them online and priced
    c("GET", "/api/v1/cleaners/{cleaner_id}/photo", path={"cleaner_id": cleaner.id})
    c("GET", "/api/v1/cleaners/{cleaner_id}/photo", path={"cleaner_id": cleaner.id}, params={"size": "160"})
    c("POST", "/api/v1/cleaner/presence", auth=cleaner.auth, json={"lat": lat, "lng": lng})
    found = c("GET", "/api/v1/cleaners/search", auth=world.client.auth, params={
        "lat": lat, "lng": lng, "service": "standard", "start": tomorrow_at(13).isoformat(), "hours": "2"}).json()
    assert [r["cleaner_id"] for r in found["data"]] == [cleaner.id]
    assert found["data"][0]["photo"] is not None and found["data"][0]["price"] is not None


async def test_booking_and_payment_answers_match_the_document(contract, pay, world, nats_client,  # noqa: F811
                                                              settings, stripe_fake: StripeFake):
    def c(method, template, **kwargs):
        return call(contract, pay, method, template, **kwargs)

    cleaner, client = world.cleaner, world.client
    # given a cleaner who set up payouts, and a client who saved a card
    c("POST", "/api/v1/cleaner/payouts/onboarding", auth=cleaner.auth)
    account = await PayoutAccount.get(cleaner_id=cleaner.id)
    enabled = event("account.updated", stripe_fake.enable_account(account.stripe_account_id))
    for _ in range(2):  # Stripe retries; the second is acknowledged as a duplicate
        body, headers = signed(enabled, WEBHOOK_SECRET)
        c("POST", "/api/v1/webhooks/stripe", content=body, headers=headers)
    c("POST", "/api/v1/payments/setup-intent", auth=client.auth)
    # when the client asks a price, books for soon, and the cleaner walks it to completion
    order = {"cleaner_id": cleaner.id, "service": "standard", "hours": 2}
    c("POST", "/api/v1/bookings/quote", auth=client.auth, json=order)
    lat, lng = world.place
    where = {"address": "1 Shape Street, Testville", "lat": lat, "lng": lng, "payment_method_id": "pm_card_visa"}
    booking_id = c("POST", "/api/v1/bookings", auth=client.auth,
                   json={**order, **where, "start": starting_soon().isoformat()}).json()["booking"]["id"]
    world.booking_id = booking_id
    moving = {"booking_id": booking_id}
    for move in ("accept", "on-the-way", "start"):
        c("POST", "/api/v1/bookings/{booking_id}/{move}", auth=cleaner.auth, path={**moving, "move": move})
    # and photographs the work on the way
    evidence = c("POST", "/api/v1/bookings/{booking_id}/evidence", auth=cleaner.auth, path=moving,
                 files={"photo": ("work.jpg", photo(), "image/jpeg")}).json()["evidence"]
    await run_images(nats_client, settings)
    c("GET", "/api/v1/bookings/{booking_id}/evidence", auth=client.auth, path=moving)
    file = {**moving, "evidence_id": evidence["id"]}
    c("GET", "/api/v1/bookings/{booking_id}/evidence/{evidence_id}/file", auth=client.auth, path=file)
    c("GET", "/api/v1/bookings/{booking_id}/evidence/{evidence_id}/file", auth=client.auth, path=file,
      params={"size": "160"})
    c("POST", "/api/v1/bookings/{booking_id}/{move}", auth=cleaner.auth, path={**moving, "move": "complete"})
    # then each party reads it, with its timeline, and lists theirs
    for party in (client, cleaner):
        c("GET", "/api/v1/bookings/{booking_id}", auth=party.auth, path=moving)
        c("GET", "/api/v1/bookings", auth=party.auth)
    # and the client gets the invoice once the invoices worker has built it
    booking = await Booking.get(id=UUID(booking_id))
    await invoice_booking(Job(new_id(), EventType.BOOKING_COMPLETED, {
        "booking_id": booking_id, "state": booking.state, "client_id": client.id, "cleaner_id": cleaner.id,
        "starts_at": booking.starts_at.isoformat(), "by": "cleaner"}, 1), settings, file_store(settings))
    c("GET", "/api/v1/bookings/{booking_id}/invoice", auth=client.auth, path=moving)
    # and staff refund part of it
    refunded = c("POST", "/api/v1/admin/bookings/{booking_id}/refund", auth=world.staff, path=moving,
                 json={"amount_minor": 500, "reason": "one room skipped"}).json()["booking"]
    assert refunded["payment"]["refunded"]["amount_minor"] == 500
    # and a second booking, cancelled by the client, says who cancelled and what it cost
    second = c("POST", "/api/v1/bookings", auth=client.auth,
               json={**order, **where, "start": tomorrow_at(15, days=3).isoformat()}).json()["booking"]["id"]
    cancelled = c("POST", "/api/v1/bookings/{booking_id}/{move}", auth=client.auth,
                  path={"booking_id": second, "move": "cancel"}, json={"reason": "moving house"}).json()["booking"]
    assert cancelled["cancellation"]["by"] == "client"


async def test_review_answers_match_the_document(contract, pay, world):
    def c(method, template, **kwargs):
        return call(contract, pay, method, template, **kwargs)

    booking = {"booking_id": world.booking_id}
    # given the completed booking, when its client rates it and its cleaner replies
    c("POST", "/api/v1/bookings/{booking_id}/review", auth=world.client.auth, path=booking,
      json={"rating": 5, "text": "Spotless."})
    c("GET", "/api/v1/bookings/{booking_id}/review", auth=world.cleaner.auth, path=booking)
    c("POST", "/api/v1/bookings/{booking_id}/review/reply", auth=world.cleaner.auth, path=booking,
      json={"text": "Thank you!"})
    # then anyone reads the cleaner's reviews
    page = c("GET", "/api/v1/cleaners/{cleaner_id}/reviews", path={"cleaner_id": world.cleaner.id}).json()
    assert page["data"][0]["reply"]["text"] == "Thank you!"


async def test_chat_and_realtime_answers_match_the_document(contract, pay, world, paid_edge, nats_client,  # noqa: F811
                                                            settings):
    def c(method, template, **kwargs):
        return call(contract, pay, method, template, **kwargs)

    client, cleaner = world.client, world.cleaner
    conversation = {"raw_id": world.booking_id}
    # given the booking's conversation, when the client sends a processed photo with a message
    c("GET", "/api/v1/conversations", auth=client.auth)
    attachment = c("POST", "/api/v1/conversations/{raw_id}/attachments", auth=client.auth, path=conversation,
                   files={"file": ("IMG_1.jpg", photo(), "image/jpeg")}).json()
    await run_images(nats_client, settings)
    message = {"client_msg_id": "shape-" + secrets.token_hex(4), "body": "look", "attachment_id": attachment["id"]}
    sent = c("POST", "/api/v1/conversations/{raw_id}/messages", auth=client.auth, path=conversation, json=message)
    assert sent.status_code == 201
    retried = c("POST", "/api/v1/conversations/{raw_id}/messages", auth=client.auth, path=conversation, json=message)
    assert retried.status_code == 200 and retried.json() == sent.json()
    # then the cleaner lists it, downloads the image and its thumbnail, and marks it read
    listed = c("GET", "/api/v1/conversations/{raw_id}/messages", auth=cleaner.auth, path=conversation).json()
    assert listed["data"][-1]["attachment"]["status"] == "ready"
    image = {**conversation, "attachment_id": attachment["id"]}
    c("GET", "/api/v1/conversations/{raw_id}/attachments/{attachment_id}/file", auth=cleaner.auth, path=image)
    c("GET", "/api/v1/conversations/{raw_id}/attachments/{attachment_id}/file", auth=cleaner.auth, path=image,
      params={"size": "160"})
    c("POST", "/api/v1/conversations/{raw_id}/read", auth=cleaner.auth, path=conversation,
      json={"seq": listed["data"][-1]["seq"]})
    # and the realtime endpoints: channel auth (private, then presence), the events API, the socket
    for channel in (f"private-booking.{world.booking_id}", f"presence-conversation.{world.booking_id}"):
        c("POST", "/api/v1/broadcasting/auth", auth=client.auth,
          json={"socket_id": "1234.5678", "channel_name": channel})
    app = REALTIME_APPS[0]
    for template, payload in [
        ("/apps/{app_id}/events", {"name": "checked", "channels": ["shapes"], "data": '{"n": 1}'}),
        ("/apps/{app_id}/batch_events", {"batch": [{"channel": "shapes", "name": "checked", "data": "{}"}] * 2}),
        ("/apps/{app_id}/events", {"name": "checked", "channels": ["presence-shapes", "shapes"], "data": "{}",
                                   "info": "user_count,subscription_count"}),
        ("/apps/{app_id}/users/{user_id}/terminate_connections", {}),
    ]:
        url, body = signed_for_pusher(app, template.format(app_id=app["id"], user_id="nobody-here"), payload)
        contract.hold(pay.post(url, content=body, headers={"Content-Type": "application/json"}), template)
    # and the channel queries
    for template, params in [
        ("/apps/{app_id}/channels", {"filter_by_prefix": "presence-", "info": "user_count,subscription_count"}),
        ("/apps/{app_id}/channels/{channel_name}", {"info": "user_count,subscription_count"}),
        ("/apps/{app_id}/channels/{channel_name}/users", {}),
    ]:
        path = template.format(app_id=app["id"], channel_name="presence-shapes")
        url, _ = signed_for_pusher(app, path, None, method="GET", query_params=params)
        contract.hold(pay.get(url), template)
    socket_url = paid_edge.url.replace("http://", "ws://") + f"/app/{app['key']}?protocol=7"
    async with connect(socket_url, open_timeout=10) as socket:
        assert socket.response is not None
        status = socket.response.status_code
    # (sanic-ext cannot document a WebSocket route's 101: Sanic registers a wrapper of the handler,
    # which decorators never see; the document keeps its body-less `default` success)
    upgrade = contract.document["paths"]["/app/{key}"]["get"]["responses"]
    assert status == 101 and "content" not in upgrade.get("101", upgrade["default"])
    contract.seen.add(("GET", "/app/{key}", status))
    # and, at last, the cleaner leaves the map
    c("DELETE", "/api/v1/cleaner/service-area", auth=cleaner.auth)


# --- the document itself ---


def test_every_success_the_document_lists_was_answered_and_held_to_it(contract):
    # given the flows above, when their answers are compared with the document's operations
    expected = contract.success_statuses()
    # then every operation, with every success status it documents, was seen and validated
    assert not expected - contract.seen, sorted(expected - contract.seen)
    operations = {(method.upper(), path) for path, operations in contract.document["paths"].items()
                  for method in operations if method in HTTP_METHODS}
    assert {(method, path) for method, path, _ in contract.seen} == operations


def _objects(schema: Any) -> list[dict[str, Any]]:
    if isinstance(schema, list):
        return [found for item in schema for found in _objects(item)]
    if not isinstance(schema, dict):
        return []
    own = [schema] if "properties" in schema else []
    return own + [found for value in schema.values() for found in _objects(value)]


def test_no_documented_answer_admits_a_field_it_does_not_name(contract):
    # given every JSON schema of a success in the document
    schemas = [media["schema"] for operations in contract.document["paths"].values()
               for method, operation in operations.items() if method in HTTP_METHODS
               for status, response in operation["responses"].items() if str(status).startswith(SUCCESS)
               for media_type, media in response.get("content", {}).items() if media_type == "application/json"]
    assert len(schemas) >= 50
    # then each object in them refuses unknown fields
    loose = [o.get("title") for schema in schemas for o in _objects(schema) if o.get("additionalProperties") is not False]
    assert not loose, loose
    # and so a real answer with one field more than documented, however deep, fails validation
    key = ("GET", "/api/v1/bookings/{booking_id}", 200)
    answer = contract.answers[key]
    answer["booking"]["price"]["quoted"]["surprise"] = True
    schema = contract.documented(*key)["content"]["application/json"]["schema"]
    with pytest.raises(jsonschema.ValidationError, match="surprise"):
        jsonschema.validate(answer, schema, cls=jsonschema.Draft202012Validator)
