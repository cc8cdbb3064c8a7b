"""Money over HTTP against a local Stripe fake, reached through the `stripe` package: saved
cards, payout onboarding, holds, captures, releases and signed webhooks processed once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from core.clock import utcnow
from core.errors import Forbidden, Invalid
from storage.models import Booking, PayoutAccount, StripeEvent
from tests.edge.test_bookings import bookable, booking_body
from tests.edge.test_supply import assert_problem
from tests.fakes.stripe import API_KEY, StripeFake, event, signed
from tests.stack import EdgeProcess, start_edge
from tests.storage.test_bookings import tomorrow_at

WEBHOOK_SECRET = "whsec_spotless_test_secret"


@pytest.fixture(scope="module")
def stripe_fake() -> Iterator[StripeFake]:
    fake = StripeFake()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def paid_edge(services: dict[str, str], tmp_root: Path, stripe_fake: StripeFake) -> Iterator[EdgeProcess]:
    """An edge with payments on, pointed at the fake."""
    process = start_edge({**services, "SPOTLESS_STRIPE_API_KEY": API_KEY,
                          "SPOTLESS_STRIPE_API_BASE": stripe_fake.url,
                          "SPOTLESS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}, tmp_root)
    yield process
    process.stop()


@pytest.fixture
def pay(paid_edge: EdgeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=paid_edge.url, timeout=30) as client:
        yield client


def webhook(pay, payload, *, secret=WEBHOOK_SECRET, at=None):
    body, headers = signed(payload, secret, at=at)
    return pay.post("/api/v1/webhooks/stripe", content=body, headers=headers)


async def payable(pay, stripe_fake, make_account, settings, *, enabled=True):
    """A bookable cleaner who went through payout onboarding (and finished it when `enabled`)."""
    cleaner = await bookable(make_account, settings)
    link = pay.post("/api/v1/cleaner/payouts/onboarding", headers=cleaner.auth)
    assert link.status_code == 200, link.text
    assert link.json()["onboarding"]["url"].startswith("https://connect.stripe.com/")
    account = await PayoutAccount.get(cleaner_id=cleaner.id)
    if enabled:
        assert webhook(pay, event("account.updated", stripe_fake.enable_account(account.stripe_account_id))
                       ).status_code == 200
    return cleaner


def book(pay, client, cleaner, when, card="pm_card_visa"):
    return pay.post("/api/v1/bookings", headers=client.auth,
                    json=booking_body(cleaner, when, payment_method_id=card))


async def test_a_client_saves_a_card_through_a_setup_intent(pay, stripe_fake, make_account):
    client = make_account(role="client")
    first = pay.post("/api/v1/payments/setup-intent", headers=client.auth)
    second = pay.post("/api/v1/payments/setup-intent", headers=client.auth)
    assert first.status_code == 201, first.text
    assert "_secret_" in first.json()["setup_intent"]["client_secret"]
    assert first.json()["setup_intent"]["customer"] == second.json()["setup_intent"]["customer"]
    customers = [c for c in stripe_fake.calls("/v1/customers") if c[2]["metadata"]["user_id"] == client.id]
    assert len(customers) == 1 and customers[0][3] == f"spotless-customer-{client.id}"


async def test_a_paid_booking_is_held_then_captured_on_completion(pay, db, stripe_fake, make_account, settings):
    # given a cleaner who has not finished payout onboarding, and a client with a card
    cleaner = await payable(pay, stripe_fake, make_account, settings, enabled=False)
    client = make_account(role="client")
    # when the client books
    made = book(pay, client, cleaner, tomorrow_at(9))
    assert made.status_code == 201, made.text
    booking = await Booking.get(id=made.json()["booking"]["id"])
    # then the price is held on the card as a destination charge with the platform's fee
    intent = stripe_fake.objects[booking.payment_intent_id]
    assert (intent["status"], intent["capture_method"], intent["amount"]) == ("requires_capture", "manual", 4800)
    assert intent["application_fee_amount"] == booking.platform_fee_minor + booking.tax_minor
    account = await PayoutAccount.get(cleaner_id=cleaner.id)
    assert intent["transfer_data"] == {"destination": account.stripe_account_id}
    assert stripe_fake.calls("/v1/payment_intents")[-1][3] == f"spotless-booking-authorize-{booking.id}"
    assert made.json()["booking"]["payment"]["status"] == "authorized"
    # and the cleaner cannot accept until Stripe says their account takes charges
    assert_problem(pay.post(f"/api/v1/bookings/{booking.id}/accept", headers=cleaner.auth), 409,
                   code="cleaner_not_payable")
    webhook(pay, event("account.updated", stripe_fake.enable_account(account.stripe_account_id)))
    for move in ("accept", "on-the-way", "start", "complete"):
        response = pay.post(f"/api/v1/bookings/{booking.id}/{move}", headers=cleaner.auth)
        assert response.status_code == 200, response.text
    # then completion captured the whole amount
    assert response.json()["booking"]["payment"]["status"] == "captured"
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 4800)


@pytest.mark.parametrize("card, code", [("pm_card_chargeDeclined", "card_declined"),
                                        ("pm_card_authenticationRequired", "authentication_required")])
async def test_a_refused_card_books_nothing_and_keeps_the_slot_free(pay, db, stripe_fake, make_account, settings,
                                                                     card, code):
    cleaner, client = await payable(pay, stripe_fake, make_account, settings), make_account(role="client")
    assert_problem(book(pay, client, cleaner, tomorrow_at(9), card), 402, code=code)
    assert await Booking.filter(cleaner_id=cleaner.id).count() == 0
    assert book(pay, client, cleaner, tomorrow_at(9)).status_code == 201
    assert_problem(pay.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, tomorrow_at(13))),
                   422, field="payment_method_id")


async def test_a_cleaner_without_payouts_cannot_be_booked_for_money(pay, db, make_account, settings):
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    assert_problem(book(pay, client, cleaner, tomorrow_at(9)), 409, code="cleaner_not_payable")


async def test_a_decline_releases_the_hold_and_a_late_cancellation_captures_only_the_fee(
        pay, db, stripe_fake, make_account, settings):
    cleaner, client = await payable(pay, stripe_fake, make_account, settings), make_account(role="client")
    declined = await Booking.get(id=book(pay, client, cleaner, tomorrow_at(9)).json()["booking"]["id"])
    pay.post(f"/api/v1/bookings/{declined.id}/decline", headers=cleaner.auth)
    assert stripe_fake.objects[declined.payment_intent_id]["status"] == "canceled"
    assert (await Booking.get(id=declined.id)).payment_status == "canceled"
    soon = (utcnow() + timedelta(hours=3)).replace(second=0, microsecond=0)
    late = await Booking.get(id=book(pay, client, cleaner, soon).json()["booking"]["id"])
    pay.post(f"/api/v1/bookings/{late.id}/accept", headers=cleaner.auth)
    cancelled = pay.post(f"/api/v1/bookings/{late.id}/cancel", headers=client.auth, json={"reason": "ill"})
    assert cancelled.json()["booking"]["payment"] == {
        "status": "partially_captured", "captured": {"amount_minor": 2400, "currency": "GBP"},
        "refunded": {"amount_minor": 0, "currency": "GBP"}}
    intent = stripe_fake.objects[late.payment_intent_id]
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 2400)


async def test_webhooks_are_verified_processed_once_and_unknown_ones_stored(pay, db, stripe_fake, make_account,
                                                                            settings):
    cleaner, client = await payable(pay, stripe_fake, make_account, settings), make_account(role="client")
    booking = await Booking.get(id=book(pay, client, cleaner, tomorrow_at(9)).json()["booking"]["id"])
    intent = stripe_fake.objects[booking.payment_intent_id]
    succeeded = event("payment_intent.succeeded", {**intent, "amount_received": 4800, "status": "succeeded"})
    # a bad signature, or a stale one, changes nothing
    assert_problem(webhook(pay, succeeded, secret="whsec_wrong"), 400, code="bad_signature")
    assert_problem(webhook(pay, succeeded, at=int(time.time()) - 3600), 400, code="bad_signature")
    assert_problem(pay.post("/api/v1/webhooks/stripe", content=b"{}"), 400)
    assert not await StripeEvent.filter(id=succeeded["id"]).exists()
    # a good one applies once, however often it is delivered
    assert webhook(pay, succeeded).json()["duplicate"] is False
    assert webhook(pay, succeeded).json()["duplicate"] is True
    row = await Booking.get(id=booking.id)
    assert (row.payment_status, row.captured_minor) == ("captured", 4800)
    # refunds and chargebacks reach the booking
    webhook(pay, event("charge.refunded", {"id": "ch_1", "object": "charge", "payment_intent": intent["id"],
                                           "amount_refunded": 4800}))
    assert (await Booking.get(id=booking.id)).refunded_minor == 4800
    webhook(pay, event("charge.dispute.created", {"id": "dp_1", "object": "dispute", "payment_intent": intent["id"]}))
    assert (await Booking.get(id=booking.id)).payment_status == "disputed"
    # events we do not act on are stored and ignored
    unknown = event("customer.created", {"id": "cus_x", "object": "customer"})
    assert webhook(pay, unknown).status_code == 200
    stored = await StripeEvent.get(id=unknown["id"])
    assert stored.handled is False and stored.type == "customer.created"


async def test_staff_refund_what_was_captured_once_per_request(pay, db, stripe_fake, make_account, settings):
    from storage import payments
    from tests.storage.test_bookings import make_user

    # given a completed, captured booking
    cleaner, client = await payable(pay, stripe_fake, make_account, settings), make_account(role="client")
    booking_id = book(pay, client, cleaner, tomorrow_at(9)).json()["booking"]["id"]
    for move in ("accept", "on-the-way", "start", "complete"):
        pay.post(f"/api/v1/bookings/{booking_id}/{move}", headers=cleaner.auth)
    paid = settings.model_copy(update={"stripe_api_key": API_KEY, "stripe_api_base": stripe_fake.url})
    staff = await make_user(settings, "admin")
    # when staff refund part, then the rest
    await payments.refund_booking(booking_id, actor=staff, amount_minor=800, settings=paid)
    refunded = await payments.refund_booking(booking_id, actor=staff, amount_minor=4000, settings=paid)
    # then Stripe refunded exactly that, and nothing more can be refunded
    assert (refunded.refunded_minor, refunded.payment_status) == (4800, "refunded")
    intent = stripe_fake.objects[(await Booking.get(id=booking_id)).payment_intent_id]
    assert intent["amount_refunded"] == 4800
    with pytest.raises(Invalid):
        await payments.refund_booking(booking_id, actor=staff, amount_minor=1, settings=paid)
    with pytest.raises(Forbidden):
        await payments.refund_booking(booking_id, actor=await make_user(settings, "client"), amount_minor=1,
                                      settings=paid)
