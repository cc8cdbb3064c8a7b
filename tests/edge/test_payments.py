"""Money over HTTP against a local Stripe fake, reached through the `stripe` package: saved
cards, payout onboarding, holds, captures, releases and signed webhooks processed once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from core.clock import utcnow
from core.errors import Forbidden
from storage import accounts
from storage.models import AuditLog, Booking, BookingRefund, OutboxEvent, PayoutAccount, StripeEvent
from tests.conftest import STRONG_PASSWORD, Account, unique_email
from tests.edge.test_bookings import bookable, booking_body
from tests.edge.test_supply import assert_problem
from tests.fakes.stripe import API_KEY, StripeFake, event, signed
from tests.stack import EdgeProcess, start_edge
from tests.storage.test_bookings import starting_soon, tomorrow_at

WEBHOOK_SECRET = "whsec_spotless_test_secret"


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


@pytest_asyncio.fixture
async def staff_account(pay, db, settings) -> Account:
    """A staff member signed in to the API."""
    email = unique_email("staff")
    await accounts.create_user(email=email, password=STRONG_PASSWORD, name="Sta Ff", role="admin",
                               settings=settings, verified=True)
    login = pay.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD,
                                                 "device_name": "pytest"})
    assert login.status_code == 200, login.text
    return Account(login.json()["user"]["id"], email, STRONG_PASSWORD, login.json()["token"], "admin")


def webhook(pay, payload, *, secret=WEBHOOK_SECRET, at=None):
    body, headers = signed(payload, secret, at=at)
    return pay.post("/api/v1/webhooks/stripe", content=body, headers=headers)


async def payable(pay, stripe_fake, make_account, settings, *, enabled=True):
    """A bookable cleaner who went through payout onboarding (and finished it when `enabled`)."""
    cleaner = await bookable(make_account, settings)
    link = pay.post("/api/v1/cleaner/payouts/onboarding", headers=cleaner.auth)
    assert link.status_code == 201, link.text
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


async def test_a_cleaner_gets_a_fresh_onboarding_link_that_expires_at_an_iso_time(pay, stripe_fake, make_account):
    # given a cleaner
    cleaner = make_account(role="cleaner")
    # when they ask for a payout onboarding link, twice
    first = pay.post("/api/v1/cleaner/payouts/onboarding", headers=cleaner.auth)
    second = pay.post("/api/v1/cleaner/payouts/onboarding", headers=cleaner.auth)
    # then each is a new link (201 Created, like every POST that makes something), for one account
    assert (first.status_code, second.status_code) == (201, 201), first.text
    link = first.json()["onboarding"]
    assert link["url"].startswith("https://connect.stripe.com/") and link["charges_enabled"] is False
    again = second.json()["onboarding"]
    assert again["url"] != link["url"] and again["url"].split("/")[-2] == link["url"].split("/")[-2]
    # and it expires at an ISO 8601 time with its offset, like every other time in the API, minutes ahead
    assert isinstance(link["expires_at"], str)
    expires = datetime.fromisoformat(link["expires_at"])
    assert expires.utcoffset() == timedelta(0)
    assert utcnow() < expires < utcnow() + timedelta(hours=1)


async def test_a_paid_booking_is_held_then_captured_on_completion(pay, db, stripe_fake, make_account, settings):
    # given a cleaner who has not finished payout onboarding, and a client with a card
    cleaner = await payable(pay, stripe_fake, make_account, settings, enabled=False)
    client = make_account(role="client")
    # when the client books, for a start soon enough that the cleaner may do the job at once
    made = book(pay, client, cleaner, starting_soon())
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
        "refunded": {"amount_minor": 0, "currency": "GBP"}, "held": {"amount_minor": 4800, "currency": "GBP"},
        "shortfall": {"amount_minor": 0, "currency": "GBP"}}
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
    unchanged = await Booking.get(id=booking.id)
    assert (unchanged.payment_status, unchanged.captured_minor) == ("authorized", 0)
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


async def test_intent_events_move_the_payment_and_a_late_earlier_step_does_not_undo_it(
        pay, db, stripe_fake, make_account, settings):
    # given two held bookings
    cleaner, client = await payable(pay, stripe_fake, make_account, settings), make_account(role="client")
    first = await Booking.get(id=book(pay, client, cleaner, tomorrow_at(9)).json()["booking"]["id"])
    second = await Booking.get(id=book(pay, client, cleaner, tomorrow_at(14)).json()["booking"]["id"])
    one, two = stripe_fake.objects[first.payment_intent_id], stripe_fake.objects[second.payment_intent_id]
    # when Stripe says the first hold was cancelled, then (late, out of order) that it was capturable
    webhook(pay, event("payment_intent.canceled", {**one, "status": "canceled"}))
    webhook(pay, event("payment_intent.amount_capturable_updated", {**one, "status": "requires_capture"}))
    # and that the second one's payment failed
    webhook(pay, event("payment_intent.payment_failed", {**two, "status": "requires_payment_method"}))
    # then the first stays cancelled, the second is failed, and each step is audited
    assert (await Booking.get(id=first.id)).payment_status == "canceled"
    assert (await Booking.get(id=second.id)).payment_status == "failed"
    assert await AuditLog.filter(entity_id=str(first.id), action="booking.payment.payment_intent.canceled").exists()


async def completed_paid_booking(pay, stripe_fake, make_account, settings):
    """A booking starting soon whose price was held, then captured when the cleaner completed it."""
    cleaner, client = await payable(pay, stripe_fake, make_account, settings), make_account(role="client")
    booking_id = book(pay, client, cleaner, starting_soon()).json()["booking"]["id"]
    for move in ("accept", "on-the-way", "start", "complete"):
        assert pay.post(f"/api/v1/bookings/{booking_id}/{move}", headers=cleaner.auth).status_code == 200
    return booking_id, client, cleaner


def refund(pay, who, booking_id, **body):
    return pay.post(f"/api/v1/admin/bookings/{booking_id}/refund", headers=who.auth, json=body)


async def test_staff_refund_part_then_the_rest_over_the_api_and_no_more(pay, db, stripe_fake, make_account,
                                                                        settings, staff_account):
    # given a completed, captured booking of 4800
    booking_id, client, _ = await completed_paid_booking(pay, stripe_fake, make_account, settings)
    # when staff refund 800, then the rest (no amount)
    first = refund(pay, staff_account, booking_id, amount_minor=800, reason="oven not cleaned")
    rest = refund(pay, staff_account, booking_id, reason="dispute upheld")
    # then Stripe refunded exactly that, the booking says so, and each refund is audited
    assert first.status_code == 200, first.text
    assert first.json()["booking"]["payment"]["refunded"] == {"amount_minor": 800, "currency": "GBP"}
    assert first.json()["booking"]["payment"]["status"] == "captured"
    assert rest.status_code == 200, rest.text
    assert rest.json()["booking"]["payment"]["status"] == "refunded"
    booking = await Booking.get(id=booking_id)
    assert (booking.refunded_minor, booking.payment_status) == (4800, "refunded")
    assert stripe_fake.objects[booking.payment_intent_id]["amount_refunded"] == 4800
    refunds = stripe_fake.calls("/v1/refunds")
    mine = [r for r in refunds if r[2]["payment_intent"] == booking.payment_intent_id]
    assert [(r[2]["amount"], r[3]) for r in mine] == [
        ("800", f"spotless-booking-refund-{booking_id}-800"), ("4000", f"spotless-booking-refund-{booking_id}-4800")]
    assert sorted(await BookingRefund.filter(booking_id=booking_id).values_list("amount_minor", flat=True)) == [
        800, 4000]
    audits = await AuditLog.filter(entity_id=booking_id, action="booking.refunded").order_by("id")
    assert [a.after["reason"] for a in audits] == ["oven not cleaned", "dispute upheld"]
    assert all(str(a.actor_id) == staff_account.id for a in audits)
    # and nothing more can be refunded: one minor unit is over what is left, a full refund has nothing left
    assert_problem(refund(pay, staff_account, booking_id, amount_minor=1, reason="again"), 422, field="amount_minor")
    assert_problem(refund(pay, staff_account, booking_id, reason="again"), 409, code="nothing_to_refund")
    assert len(stripe_fake.calls("/v1/refunds")) == len(refunds)


async def test_a_refund_above_what_was_captured_or_of_nothing_captured_is_refused(
        pay, db, stripe_fake, make_account, settings, staff_account):
    # given a captured booking, and a booking only held (not completed)
    booking_id, client, cleaner = await completed_paid_booking(pay, stripe_fake, make_account, settings)
    held = book(pay, client, cleaner, tomorrow_at(15)).json()["booking"]["id"]
    calls = len(stripe_fake.calls("/v1/refunds"))
    # when staff ask for more than was captured, for nothing captured, or without a reason / with junk
    over = refund(pay, staff_account, booking_id, amount_minor=4801, reason="goodwill")
    nothing = refund(pay, staff_account, held, reason="goodwill")
    no_reason = refund(pay, staff_account, booking_id, amount_minor=100, reason="  ")
    as_text = refund(pay, staff_account, booking_id, amount_minor="100", reason="goodwill")
    negative = refund(pay, staff_account, booking_id, amount_minor=-5, reason="goodwill")
    unknown = refund(pay, staff_account, "00000000-0000-0000-0000-000000000000", reason="goodwill")
    # then each is a problem naming what is wrong, and Stripe was never asked
    assert_problem(over, 422, field="amount_minor")
    assert_problem(nothing, 409, code="nothing_captured")
    assert_problem(no_reason, 422, field="reason")
    assert_problem(as_text, 422, field="amount_minor")
    assert_problem(negative, 422, field="amount_minor")
    assert_problem(unknown, 404)
    assert len(stripe_fake.calls("/v1/refunds")) == calls
    assert (await Booking.get(id=booking_id)).refunded_minor == 0


async def test_only_staff_refund(pay, db, stripe_fake, make_account, settings):
    # given a captured booking
    booking_id, client, cleaner = await completed_paid_booking(pay, stripe_fake, make_account, settings)
    # when its client or its cleaner ask for a refund over the staff endpoint
    for who in (client, cleaner):
        assert_problem(refund(pay, who, booking_id, amount_minor=100, reason="please"), 403)
    # then nothing was refunded; and the domain action refuses a non-admin too
    assert (await Booking.get(id=booking_id)).refunded_minor == 0
    from storage import payments
    from tests.storage.test_bookings import make_user
    with pytest.raises(Forbidden):
        await payments.refund_booking(booking_id, actor=await make_user(settings, "client"), amount_minor=1,
                                      reason="x", settings=settings)


async def test_a_replayed_refund_is_counted_once_and_a_refund_webhook_never_lowers_the_total(
        pay, db, stripe_fake, make_account, settings):
    from storage import payments
    from tests.storage.test_bookings import make_user

    # given a captured booking and staff
    booking_id, _, _ = await completed_paid_booking(pay, stripe_fake, make_account, settings)
    paid = settings.model_copy(update={"stripe_api_key": API_KEY, "stripe_api_base": stripe_fake.url})
    staff = await make_user(settings, "admin")
    # when the same refund request reaches us twice (the first answer was lost) - same refunded total,
    # same idempotency key, Stripe replays the same refund
    booking = await Booking.get(id=booking_id)
    await payments.refund_booking(booking_id, actor=staff, amount_minor=500, reason="late", settings=paid)
    await Booking.filter(id=booking_id).update(refunded_minor=0)  # as if our write had not happened
    again = await payments.refund_booking(booking_id, actor=staff, amount_minor=500, reason="late", settings=paid)
    # then it is one refund of 500, at Stripe and with us
    assert stripe_fake.objects[booking.payment_intent_id]["amount_refunded"] == 500
    assert again.refunded_minor == 500
    assert await BookingRefund.filter(booking_id=booking_id).count() == 1
    # and Stripe's charge.refunded webhook carrying an older, lower total changes nothing
    webhook(pay, event("charge.refunded", {"id": "ch_2", "object": "charge", "payment_intent": booking.payment_intent_id,
                                           "amount_refunded": 0}))
    assert (await Booking.get(id=booking_id)).refunded_minor == 500


# --- completing with other hours, and staff cancelling with or without a fee ---


async def started_paid_booking(pay, stripe_fake, make_account, settings, *, hours=2, start=None):
    """A booking of `hours` at £20/h, starting soon unless told, whose price is held and whose
    cleaner has started the work."""
    cleaner, client = await payable(pay, stripe_fake, make_account, settings), make_account(role="client")
    made = pay.post("/api/v1/bookings", headers=client.auth, json=booking_body(
        cleaner, start or starting_soon(), hours=hours, payment_method_id="pm_card_visa"))
    assert made.status_code == 201, made.text
    booking_id = made.json()["booking"]["id"]
    for move in ("accept", "on-the-way", "start"):
        assert pay.post(f"/api/v1/bookings/{booking_id}/{move}", headers=cleaner.auth).status_code == 200
    return await Booking.get(id=booking_id), client, cleaner


def complete(pay, who, booking_id, **body):
    return pay.post(f"/api/v1/bookings/{booking_id}/complete", headers=who.auth, json=body)


async def test_an_extra_hour_raises_the_hold_then_captures_the_new_total_with_its_fee(
        pay, db, stripe_fake, make_account, settings):
    # given a 2-hour booking held at 4800 (the card asked for incremental authorisation)
    booking, client, cleaner = await started_paid_booking(pay, stripe_fake, make_account, settings)
    intent = stripe_fake.objects[booking.payment_intent_id]
    assert intent["payment_method_options"] == {"card": {"request_incremental_authorization": "if_available"}}
    # when the cleaner completes after 3 hours
    done = complete(pay, cleaner, booking.id, hours="3")
    # then the hold was raised to the re-quoted 7200, and 7200 captured with the re-computed fee
    assert done.status_code == 200, done.text
    increments = stripe_fake.calls(f"/v1/payment_intents/{booking.payment_intent_id}/increment_authorization")
    assert [(c[2]["amount"], c[2]["application_fee_amount"], c[3]) for c in increments] == [
        ("7200", "2100", f"spotless-booking-increment-{booking.id}-7200")]
    captures = stripe_fake.calls(f"/v1/payment_intents/{booking.payment_intent_id}/capture")
    assert [(c[2]["amount_to_capture"], c[2]["application_fee_amount"]) for c in captures] == [("7200", "2100")]
    assert (intent["status"], intent["amount"], intent["amount_received"], intent["application_fee_amount"]) == (
        "succeeded", 7200, 7200, 2100)
    # and the booking shows the quote and the final price, paid in full
    shown = done.json()["booking"]
    assert shown["hours"] == 3.0
    assert shown["price"]["quoted"]["total"]["amount_minor"] == 4800
    assert shown["price"]["final"]["total"]["amount_minor"] == 7200
    assert shown["price"]["final"]["hours"] == 3.0 and shown["price"]["quoted"]["hours"] == 2.0
    assert shown["price"]["platform_fee"]["amount_minor"] == 900
    assert shown["payment"]["status"] == "captured" and shown["payment"]["captured"]["amount_minor"] == 7200
    row = await Booking.get(id=booking.id)
    assert (row.amount_minor, row.quoted_amount_minor, row.held_minor, row.capture_shortfall_minor) == (
        7200, 4800, 7200, 0)
    # and the client is told the new price in the completion event
    told = await OutboxEvent.get(type="booking.completed", payload__contains={"booking_id": str(booking.id)})
    assert (told.payload["quoted_amount_minor"], told.payload["amount_minor"], told.payload["hours"]) == (
        4800, 7200, "3.00")


async def test_a_refused_increment_captures_what_is_held_and_records_the_shortfall(
        pay, db, stripe_fake, make_account, settings):
    # given a 2-hour booking held at 4800, and a card that refuses to raise the hold
    booking, client, cleaner = await started_paid_booking(pay, stripe_fake, make_account, settings)
    stripe_fake.fail_next(f"/{booking.payment_intent_id}/increment_authorization", status=402, type_="card_error",
                          message="Your card was declined.", code="card_declined", decline_code="generic_decline")
    # when the cleaner completes after 3 hours
    done = complete(pay, cleaner, booking.id, hours=3)
    # then the completion stands, only the 4800 held is captured (the platform's share of it) ...
    assert done.status_code == 200, done.text
    intent = stripe_fake.objects[booking.payment_intent_id]
    assert (intent["status"], intent["amount"], intent["amount_received"], intent["application_fee_amount"]) == (
        "succeeded", 4800, 4800, 1400)
    payment = done.json()["booking"]["payment"]
    assert payment["status"] == "partially_captured"
    assert (payment["captured"]["amount_minor"], payment["shortfall"]["amount_minor"]) == (4800, 2400)
    # ... and the 2400 the card would not cover is audited and announced for staff to follow up
    row = await Booking.get(id=booking.id)
    assert (row.state, row.amount_minor, row.captured_minor, row.capture_shortfall_minor) == (
        "completed", 7200, 4800, 2400)
    audit = await AuditLog.get(entity_id=str(booking.id), action="booking.payment.shortfall")
    assert audit.after == {"amount_minor": 7200, "captured_minor": 4800, "shortfall_minor": 2400}
    told = await OutboxEvent.get(type="booking.payment_updated", payload__contains={
        "booking_id": str(booking.id), "reason": "capture_shortfall"})
    assert told.payload["shortfall_minor"] == 2400


async def test_fewer_hours_capture_less_and_release_the_rest(pay, db, stripe_fake, make_account, settings):
    # given a 3-hour booking held at 7200
    booking, client, cleaner = await started_paid_booking(pay, stripe_fake, make_account, settings, hours=3)
    # when the cleaner completes after 2.5 hours
    done = complete(pay, cleaner, booking.id, hours="2.5")
    # then 6000 is captured with the fee re-computed (750 take + 1000 VAT), and no increment was asked
    assert done.status_code == 200, done.text
    intent = stripe_fake.objects[booking.payment_intent_id]
    assert (intent["amount"], intent["amount_received"], intent["application_fee_amount"]) == (7200, 6000, 1750)
    assert not stripe_fake.calls(f"/v1/payment_intents/{booking.payment_intent_id}/increment_authorization")
    shown = done.json()["booking"]
    assert shown["payment"]["status"] == "captured" and shown["payment"]["captured"]["amount_minor"] == 6000
    assert shown["price"]["quoted"]["total"]["amount_minor"] == 7200
    assert shown["price"]["final"]["total"]["amount_minor"] == 6000


async def test_completing_with_too_many_hours_or_not_as_the_cleaner_changes_nothing(
        pay, db, stripe_fake, make_account, settings):
    # given a 2-hour booking in progress (the limit is 2 extra hours)
    booking, client, cleaner = await started_paid_booking(pay, stripe_fake, make_account, settings)
    stranger = make_account(role="cleaner")
    # when the cleaner claims 4.25 hours, junk hours, or hours on another move; or others complete it
    over = complete(pay, cleaner, booking.id, hours="4.25")
    junk = complete(pay, cleaner, booking.id, hours="three")
    below = complete(pay, cleaner, booking.id, hours="1")
    elsewhere = pay.post(f"/api/v1/bookings/{booking.id}/start", headers=cleaner.auth, json={"hours": "3"})
    by_client = complete(pay, client, booking.id, hours="3")
    by_stranger = complete(pay, stranger, booking.id, hours="3")
    # then each is a problem naming what is wrong, and nothing moved or reached Stripe
    assert_problem(over, 422, field="hours", code="over_extra_hours")
    assert_problem(junk, 422, field="hours")
    assert_problem(below, 422, field="hours", code="below_minimum_duration")
    assert_problem(elsewhere, 422, field="hours")
    assert_problem(by_client, 403, code="not_your_move")
    assert_problem(by_stranger, 404)
    row = await Booking.get(id=booking.id)
    assert (row.state, row.hours, row.amount_minor, row.payment_status) == ("in_progress", 2, 4800, "authorized")
    assert stripe_fake.objects[booking.payment_intent_id]["status"] == "requires_capture"
    # and exactly 4 hours (the limit) is accepted
    assert complete(pay, cleaner, booking.id, hours="4").status_code == 200
    assert stripe_fake.objects[booking.payment_intent_id]["amount_received"] == 9600


def cancel(pay, who, booking_id, **body):
    return pay.post(f"/api/v1/bookings/{booking_id}/cancel", headers=who.auth, json={"reason": "no access", **body})


async def test_staff_cancel_with_a_fee_capture_the_late_fee_and_without_release_the_hold(
        pay, db, stripe_fake, make_account, settings, staff_account):
    # given two accepted bookings starting in three hours (a client cancelling now would pay half)
    soon = (utcnow() + timedelta(hours=3)).replace(second=0, microsecond=0)
    cleaner, client = await payable(pay, stripe_fake, make_account, settings), make_account(role="client")
    with_fee = book(pay, client, cleaner, soon).json()["booking"]["id"]
    free = book(pay, client, cleaner, soon + timedelta(hours=4)).json()["booking"]["id"]
    for booking_id in (with_fee, free):
        assert pay.post(f"/api/v1/bookings/{booking_id}/accept", headers=cleaner.auth).status_code == 200
    # when staff cancel one with the fee and the other without
    charged = cancel(pay, staff_account, with_fee, charge_late_fee=True)
    released = cancel(pay, staff_account, free)
    # then the first captured the 2400 fee (with the platform's share of it), the second let the hold go
    assert charged.status_code == 200, charged.text
    assert charged.json()["booking"]["cancellation"] == {
        "by": "admin", "reason": "no access", "late": True, "fee": {"amount_minor": 2400, "currency": "GBP"}}
    assert charged.json()["booking"]["payment"]["status"] == "partially_captured"
    first = stripe_fake.objects[(await Booking.get(id=with_fee)).payment_intent_id]
    assert (first["status"], first["amount_received"], first["application_fee_amount"]) == ("succeeded", 2400, 700)
    assert released.status_code == 200, released.text
    assert released.json()["booking"]["cancellation"]["fee"]["amount_minor"] == 0
    assert stripe_fake.objects[(await Booking.get(id=free)).payment_intent_id]["status"] == "canceled"
    # and both are audited and announced with the fee
    audit = await AuditLog.get(entity_id=with_fee, action="booking.cancel")
    assert (str(audit.actor_id), audit.after["cancellation_fee_minor"]) == (staff_account.id, 2400)
    told = await OutboxEvent.get(type="booking.cancelled", payload__contains={"booking_id": with_fee})
    assert (told.payload["by"], told.payload["cancellation_fee_minor"]) == ("admin", 2400)


async def test_only_staff_charge_a_fee_and_only_when_one_is_due(pay, db, stripe_fake, make_account, settings,
                                                                staff_account):
    # given an accepted booking tomorrow (cancelling it is still free) and one in three hours
    cleaner, client = await payable(pay, stripe_fake, make_account, settings), make_account(role="client")
    early = book(pay, client, cleaner, tomorrow_at(20, days=2)).json()["booking"]["id"]
    soon = (utcnow() + timedelta(hours=3)).replace(second=0, microsecond=0)
    late = book(pay, client, cleaner, soon).json()["booking"]["id"]
    for booking_id in (early, late):
        assert pay.post(f"/api/v1/bookings/{booking_id}/accept", headers=cleaner.auth).status_code == 200
    # when staff ask for a fee on the early one, the parties ask for one on the late one,
    # and a fee is asked for on another move
    assert_problem(cancel(pay, staff_account, early, charge_late_fee=True), 409, code="no_fee_due")
    assert_problem(cancel(pay, client, late, charge_late_fee=True), 403, code="not_your_move")
    assert_problem(cancel(pay, cleaner, late, charge_late_fee=True), 403, code="not_your_move")
    assert_problem(pay.post(f"/api/v1/bookings/{late}/on-the-way", headers=cleaner.auth,
                            json={"charge_late_fee": True}), 422, field="charge_late_fee")
    # then nothing was cancelled and both holds stand
    for booking_id in (early, late):
        row = await Booking.get(id=booking_id)
        assert (row.state, row.payment_status) == ("accepted", "authorized")
        assert stripe_fake.objects[row.payment_intent_id]["status"] == "requires_capture"


async def test_a_capture_retried_after_the_hold_was_raised_does_not_raise_it_again(
        pay, db, stripe_fake, make_account, settings):
    from storage import payments

    # given a 2-hour booking completed after 3 hours, whose hold was raised but whose capture Stripe refused
    booking, client, cleaner = await started_paid_booking(pay, stripe_fake, make_account, settings)
    stripe_fake.fail_next(f"/{booking.payment_intent_id}/capture")
    assert complete(pay, cleaner, booking.id, hours="3").json()["booking"]["payment"]["status"] == "settle_failed"
    assert stripe_fake.objects[booking.payment_intent_id]["amount_capturable"] == 7200
    # when the settlement is retried
    paid = settings.model_copy(update={"stripe_api_key": API_KEY, "stripe_api_base": stripe_fake.url})
    settled = await payments.retry_failed_settlements(settings=paid, now=utcnow() + timedelta(days=1))
    # then it captured the raised 7200, asking Stripe to raise the hold only the first time
    assert booking.id in settled
    row = await Booking.get(id=booking.id)
    assert (row.payment_status, row.captured_minor, row.held_minor, row.capture_shortfall_minor) == (
        "captured", 7200, 7200, 0)
    path = f"/v1/payment_intents/{booking.payment_intent_id}"
    assert len(stripe_fake.calls(f"{path}/increment_authorization")) == 1
    assert [c[2]["amount_to_capture"] for c in stripe_fake.calls(f"{path}/capture")] == ["7200", "7200"]
