"""The happy path, end to end over HTTP, as the apps and Stripe drive it: a running edge with
payments on (Stripe is the local fake, reached through the `stripe` package), a `spotless worker
all` process for the jobs, and nothing in between reached from here but the HTTP API, a signed
Stripe webhook and the `spotless users make-admin` command an operator would run.

A client and a cleaner sign up; the cleaner fills in a profile, schedule and service area, sends
an identity document that staff approve, and finishes payout onboarding; the client saves a
card, finds the cleaner, books a deep clean; the cleaner accepts, heads over, starts, is told
a deep clean needs a photo, uploads one, completes; the price is captured; the client downloads
the invoice PDF and leaves a review.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from cli.embedded import stop_process
from tests.conftest import Account, register, unique_email
from tests.core.test_supply import pdf_bytes
from tests.edge.test_search import somewhere, square
from tests.edge.test_supply import assert_problem
from tests.fakes.stripe import API_KEY, StripeFake, event, signed
from tests.jobs.test_images import photo
from tests.stack import ROOT, EdgeProcess, start_edge
from tests.storage.test_bookings import starting_soon

WEBHOOK_SECRET = "whsec_spotless_e2e_secret"


@pytest.fixture(scope="module")
def stack_env(services: dict[str, str], stripe_fake: StripeFake) -> dict[str, str]:
    return {**services, "SPOTLESS_STRIPE_API_KEY": API_KEY, "SPOTLESS_STRIPE_API_BASE": stripe_fake.url,
            "SPOTLESS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture(scope="module")
def running_edge(stack_env: dict[str, str], tmp_root: Path) -> Iterator[EdgeProcess]:
    process = start_edge(stack_env, tmp_root)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def job_worker(stack_env: dict[str, str], tmp_root: Path) -> Iterator[Path]:
    """`spotless worker all` as production runs it: relay, every worker kind and the scheduler.
    Stopped with the module, so later tests' own workers get their jobs."""
    log = tmp_root / "e2e-worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "all"],
                                env={**os.environ, **stack_env}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    yield log
    stop_process(proc, sig=signal.SIGTERM, timeout_s=30)


@pytest.fixture
def http(running_edge: EdgeProcess, job_worker: Path) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running_edge.url, timeout=30) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json() if response.headers.get("content-type", "").startswith("application/json") else {}


def wait_for(fetch: Callable[[], httpx.Response], done: Callable[[httpx.Response], bool], *,
             what: str, timeout_s: float = 90.0) -> httpx.Response:
    """Ask again until the jobs have done their part (a deadline for a stuck stack, not a speed test)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = fetch()
        if done(response):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {response.status_code} {response.text[:300]}")
        time.sleep(0.2)


def make_admin(stack_env: dict[str, str], email: str) -> None:
    """What an operator runs on a server: `spotless users make-admin <email>`."""
    done = subprocess.run([sys.executable, "-m", "cli.main", "users", "make-admin", email],
                          env={**os.environ, **stack_env}, cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()


def webhook(http: httpx.Client, payload: dict[str, Any]) -> None:
    body, headers = signed(payload, WEBHOOK_SECRET)
    ok(http.post("/api/v1/webhooks/stripe", content=body, headers=headers))


def test_a_client_books_a_verified_cleaner_who_proves_the_work_and_gets_paid(
        http: httpx.Client, stack_env: dict[str, str], stripe_fake: StripeFake):
    lat, lng = somewhere()

    # --- sign-ups, and a member of staff made by the operator ---
    client = register(http, role="client", name="Clara Client")
    cleaner = register(http, role="cleaner", name="Cleo Cleaner")
    staff_email = unique_email("staff")
    staff = register(http, role="client", email=staff_email, name="Sam Staff")
    make_admin(stack_env, staff_email)
    staff = Account(staff.id, staff.email, staff.password, staff.token, "admin")

    # --- the cleaner sets up shop ---
    ok(http.put("/api/v1/cleaner/profile", headers=cleaner.auth, json={
        "bio": "Ten years of deep cleans.", "time_zone": "Europe/London", "travel_buffer_minutes": 30,
        "services": [{"service_id": "standard", "hourly_rate_minor": 2000},
                     {"service_id": "deep", "hourly_rate_minor": 2600}]}))
    # (around the clock, every day: the client books for within the hour whenever this runs)
    ok(http.put("/api/v1/cleaner/availability", headers=cleaner.auth, json={
        "weekly": [{"weekday": day, "start_minute": 0, "end_minute": 24 * 60} for day in range(7)]}))
    ok(http.put("/api/v1/cleaner/service-area", headers=cleaner.auth, json=square(lat, lng)))
    sent = ok(http.post("/api/v1/cleaner/verification", headers=cleaner.auth,
                        files={"document": ("passport.pdf", pdf_bytes(), "application/pdf")}), 201)
    assert sent["verification"]["status"] == "pending"
    queue = ok(http.get("/api/v1/admin/cleaners", headers=staff.auth, params={"verification": "pending",
                                                                               "limit": 100}))
    assert cleaner.id in [entry["id"] for entry in queue["data"]]
    ok(http.post(f"/api/v1/admin/cleaners/{cleaner.id}/verification", headers=staff.auth,
                 json={"decision": "approve"}))
    assert ok(http.get("/api/v1/cleaner/profile", headers=cleaner.auth))["profile"]["verification"][
        "status"] == "approved"
    # payout onboarding: Stripe sends the cleaner through its hosted form, then tells us by webhook
    link = ok(http.post("/api/v1/cleaner/payouts/onboarding", headers=cleaner.auth), 201)
    assert link["onboarding"]["url"].startswith("https://connect.stripe.com/")
    account_id = next(o["id"] for o in stripe_fake.objects.values()
                      if o.get("object") == "account" and o.get("metadata", {}).get("cleaner_id") == cleaner.id)
    webhook(http, event("account.updated", stripe_fake.enable_account(account_id)))
    ok(http.post("/api/v1/cleaner/presence", headers=cleaner.auth, json={"lat": lat, "lng": lng}))

    # --- the client saves a card (Stripe.js confirms the setup intent with Stripe itself) ---
    setup = ok(http.post("/api/v1/payments/setup-intent", headers=client.auth), 201)
    assert "_secret_" in setup["setup_intent"]["client_secret"]

    # --- and finds the cleaner for a four-hour deep clean starting in a little over an hour (soon
    # enough for the cleaner to set off at once: not earlier than three hours before the start) ---
    start = starting_soon()
    found = ok(http.get("/api/v1/cleaners/search", headers=client.auth, params={
        "lat": lat, "lng": lng, "service": "deep", "start": start.isoformat(), "hours": "4"}))
    [match] = [c for c in found["data"] if c["cleaner_id"] == cleaner.id]
    assert match["price"]["amount_minor"] == 4 * 2600 and match["online"] is True

    # --- books; the price is held on the card ---
    made = ok(http.post("/api/v1/bookings", headers=client.auth, json={
        "cleaner_id": cleaner.id, "service": "deep", "start": start.isoformat(), "hours": 4,
        "address": "Flat 2, 10 Example Road, London", "lat": lat, "lng": lng, "notes": "Oven too, please.",
        "payment_method_id": "pm_card_visa"}), 201)["booking"]
    booking_id, total = made["id"], made["price"]["total"]["amount_minor"]
    assert made["payment"]["status"] == "authorized" and total == 4 * 2600 * 12 // 10
    intent = next(o for o in stripe_fake.objects.values() if o.get("object") == "payment_intent"
                  and o.get("metadata", {}).get("booking_id") == booking_id)
    assert (intent["status"], intent["amount"]) == ("requires_capture", total)

    # --- the day: accept, on the way, start ---
    for move in ("accept", "on-the-way", "start"):
        ok(http.post(f"/api/v1/bookings/{booking_id}/{move}", headers=cleaner.auth))
    # a deep clean needs a photo before it is completed
    assert_problem(http.post(f"/api/v1/bookings/{booking_id}/complete", headers=cleaner.auth), 409,
                   code="evidence_required")
    evidence = ok(http.post(f"/api/v1/bookings/{booking_id}/evidence", headers=cleaner.auth,
                            files={"photo": ("kitchen.jpg", photo(), "image/jpeg")}), 201)["evidence"]
    done = ok(http.post(f"/api/v1/bookings/{booking_id}/complete", headers=cleaner.auth))["booking"]

    # --- the money moved: the hold was captured in full ---
    assert done["state"] == "completed" and done["payment"]["status"] == "captured"
    assert (intent["status"], intent["amount_received"]) == ("succeeded", total)

    # --- the images job made safe copies the client can see ---
    listed = wait_for(lambda: http.get(f"/api/v1/bookings/{booking_id}/evidence", headers=client.auth),
                      lambda r: r.status_code == 200 and r.json()["data"][0]["status"] != "processing",
                      what="evidence processing")
    [seen] = listed.json()["data"]
    assert seen["id"] == evidence["id"] and seen["status"] == "ready"
    assert seen["captured_at"] is not None and seen["location"] == {"lat": 52.37, "lng": -4.89}
    thumbnail = http.get(seen["thumbnails"]["480"], headers=client.auth)
    assert thumbnail.status_code == 200 and Image.open(io.BytesIO(thumbnail.content)).format == "WEBP"

    # --- the invoice, issued by the invoices job ---
    invoice = wait_for(lambda: http.get(f"/api/v1/bookings/{booking_id}/invoice", headers=client.auth),
                       lambda r: r.status_code != 409, what="invoice")
    assert invoice.status_code == 200, invoice.text
    assert invoice.headers["content-type"] == "application/pdf" and invoice.content.startswith(b"%PDF-")

    # --- and the review ---
    review = ok(http.post(f"/api/v1/bookings/{booking_id}/review", headers=client.auth,
                          json={"rating": 5, "text": "Spotless, as promised. The oven looks new."}), 201)
    assert review["review"]["rating"] == 5
    public = ok(http.get(f"/api/v1/cleaners/{cleaner.id}/reviews", headers=client.auth))
    assert [r["text"] for r in public["data"]] == ["Spotless, as promised. The oven looks new."]
