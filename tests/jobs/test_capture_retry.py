"""Settling a booking's money when Stripe refused it at the time: the scheduler's
`retry_failed_settlements` retries with backoff and a cap, each due attempt made once, against
the local Stripe fake (which fails the first capture, then succeeds)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from tortoise import connections

from core.clock import utcnow
from core.settings import Settings
from jobs.scheduler import register, run_due, tasks
from storage import bookings, payments
from storage.models import AuditLog, Booking, OutboxEvent, PayoutAccount, SettleRetry, User
from tests.fakes.stripe import API_KEY, StripeFake, event, signed
from tests.storage.test_bookings import (
    bookable_cleaner,
    make_user,
    request_for,
    starting_soon,
    tomorrow_at,
)

WEBHOOK_SECRET = "whsec_capture_retry_test"
BASE_S = 60


@pytest.fixture
def paid(settings: Settings, stripe_fake: StripeFake) -> Settings:
    return settings.model_copy(update={
        "stripe_api_key": API_KEY, "stripe_api_base": stripe_fake.url, "stripe_webhook_secret": WEBHOOK_SECRET,
        "settle_retry_base_s": BASE_S, "settle_retry_max_s": 3600, "settle_max_attempts": 3})


async def deliver(payload: dict, settings: Settings) -> None:
    body, headers = signed(payload, WEBHOOK_SECRET)
    await payments.receive_webhook(payload=body, signature=headers["Stripe-Signature"], settings=settings)


async def in_progress(paid: Settings, stripe_fake: StripeFake, *, start=None) -> tuple[Booking, User, User]:
    """A paid booking (card held), starting soon unless told, whose cleaner has started the work."""
    cleaner, client = await bookable_cleaner(paid), await make_user(paid, "client")
    await payments.start_onboarding(actor=cleaner, settings=paid)
    account = await PayoutAccount.get(cleaner_id=cleaner.id)
    await deliver(event("account.updated", stripe_fake.enable_account(account.stripe_account_id)), paid)
    booking = await bookings.create_booking(actor=client, settings=paid, request=request_for(
        cleaner, start or starting_soon(), payment_method_id="pm_card_visa"))
    for move in (bookings.accept_booking, bookings.mark_on_the_way, bookings.start_booking):
        booking = await move(booking.id, actor=cleaner, settings=paid)
    return booking, client, cleaner


def capture_keys(stripe_fake: StripeFake, booking: Booking) -> list[str | None]:
    return [c[3] for c in stripe_fake.calls(f"/v1/payment_intents/{booking.payment_intent_id}/capture")]


async def test_a_failed_capture_is_retried_after_its_backoff_and_then_captured_once(db, paid, stripe_fake):
    # given a started booking, and Stripe failing the next capture
    booking, _, cleaner = await in_progress(paid, stripe_fake)
    stripe_fake.fail_next(f"/{booking.payment_intent_id}/capture")
    # when the cleaner completes it
    done = await bookings.complete_booking(booking.id, actor=cleaner, settings=paid)
    # then the booking is completed, its money marked settle_failed and a retry scheduled after the base delay
    assert (done.state, done.payment_status) == ("completed", "settle_failed")
    retry = await SettleRetry.get(booking_id=booking.id)
    assert retry.attempts == 0 and "unknown error" in retry.last_error.lower()
    assert timedelta(seconds=BASE_S - 5) < retry.next_attempt_at - utcnow() <= timedelta(seconds=BASE_S)

    # when a pass runs before it is due, nothing is tried
    assert await payments.retry_failed_settlements(settings=paid) == []
    assert len(capture_keys(stripe_fake, booking)) == 1

    # when two runners pass at the same moment once it is due
    later = utcnow() + timedelta(seconds=BASE_S + 1)
    results = await asyncio.gather(*(payments.retry_failed_settlements(settings=paid, now=later) for _ in range(2)))
    # then exactly one retried, with a key of its own (Stripe replays a key's failure), and it captured
    assert sorted(len(r) for r in results) == [0, 1]
    assert capture_keys(stripe_fake, booking) == [f"spotless-booking-capture-{booking.id}",
                                                  f"spotless-booking-capture-{booking.id}-retry-1"]
    settled = await Booking.get(id=booking.id)
    assert (settled.payment_status, settled.captured_minor) == ("captured", settled.amount_minor)
    intent = stripe_fake.objects[booking.payment_intent_id]
    assert (intent["status"], intent["amount_received"]) == ("succeeded", settled.amount_minor)
    assert not await SettleRetry.filter(booking_id=booking.id).exists()
    assert await AuditLog.filter(entity_id=str(booking.id), action="booking.payment.settled").count() == 1
    assert await OutboxEvent.filter(type="booking.payment_updated",
                                    payload__contains={"booking_id": str(booking.id), "reason": "settle_retry"}
                                    ).count() == 1
    # and a further pass has nothing to do
    assert await payments.retry_failed_settlements(settings=paid, now=later + timedelta(hours=1)) == []
    assert len(capture_keys(stripe_fake, booking)) == 2


async def test_retries_back_off_doubling_and_stop_at_the_cap_for_staff(db, paid, stripe_fake):
    # given a completion whose capture Stripe keeps failing (the first try and every retry)
    booking, _, cleaner = await in_progress(paid, stripe_fake)
    stripe_fake.fail_next(f"/{booking.payment_intent_id}/capture", times=1 + paid.settle_max_attempts)
    await bookings.complete_booking(booking.id, actor=cleaner, settings=paid)
    now = utcnow()
    # when the retries come due one after another
    waits = []
    for attempt in range(1, paid.settle_max_attempts + 1):
        now = (await SettleRetry.get(booking_id=booking.id)).next_attempt_at
        assert await payments.retry_failed_settlements(settings=paid, now=now) == []
        row = await SettleRetry.get(booking_id=booking.id)
        assert row.attempts == attempt
        waits.append(row.next_attempt_at and (row.next_attempt_at - now).total_seconds())
    # then each wait doubled, and after the last attempt the booking is left to staff
    assert waits[:-1] == [BASE_S * 2, BASE_S * 4]
    assert waits[-1] is None
    assert (await Booking.get(id=booking.id)).payment_status == "settle_failed"
    gave_up = await AuditLog.get(entity_id=str(booking.id), action="booking.payment.settle_gave_up")
    assert gave_up.after["attempts"] == paid.settle_max_attempts
    # and no later pass calls Stripe again
    calls = len(capture_keys(stripe_fake, booking))
    assert await payments.retry_failed_settlements(settings=paid, now=now + timedelta(days=30)) == []
    assert len(capture_keys(stripe_fake, booking)) == calls == 1 + paid.settle_max_attempts


async def test_a_capture_that_reached_stripe_is_read_back_not_repeated(db, paid, stripe_fake):
    # given a completion whose capture answer was lost although Stripe captured it
    booking, _, cleaner = await in_progress(paid, stripe_fake)
    stripe_fake.fail_next(f"/{booking.payment_intent_id}/capture")
    await bookings.complete_booking(booking.id, actor=cleaner, settings=paid)
    intent = stripe_fake.objects[booking.payment_intent_id]
    intent.update(status="succeeded", amount_received=intent["amount"], amount_capturable=0)
    # when the retry comes due
    later = utcnow() + timedelta(seconds=BASE_S + 1)
    assert await payments.retry_failed_settlements(settings=paid, now=later) == [booking.id]
    # then the booking records the capture Stripe already made
    settled = await Booking.get(id=booking.id)
    assert (settled.payment_status, settled.captured_minor) == ("captured", intent["amount"])


async def test_a_late_cancellation_fee_and_a_release_are_retried_too(db, paid, stripe_fake):
    # given a late-cancelled booking whose fee capture failed, and a declined one whose release failed
    soon = (utcnow() + timedelta(hours=3)).replace(second=0, microsecond=0)
    cleaner, client = await bookable_cleaner(paid), await make_user(paid, "client")
    await payments.start_onboarding(actor=cleaner, settings=paid)
    account = await PayoutAccount.get(cleaner_id=cleaner.id)
    await deliver(event("account.updated", stripe_fake.enable_account(account.stripe_account_id)), paid)
    late = await bookings.create_booking(actor=client, settings=paid,
                                         request=request_for(cleaner, soon, payment_method_id="pm_card_visa"))
    declined = await bookings.create_booking(actor=client, settings=paid, request=request_for(
        cleaner, tomorrow_at(15, days=2), payment_method_id="pm_card_visa"))
    await bookings.accept_booking(late.id, actor=cleaner, settings=paid)
    stripe_fake.fail_next(f"/{late.payment_intent_id}/capture")
    stripe_fake.fail_next(f"/{declined.payment_intent_id}/cancel")
    late = await bookings.cancel_booking(late.id, actor=client, reason="plans changed", settings=paid)
    declined = await bookings.decline_booking(declined.id, actor=cleaner, settings=paid)
    assert late.payment_status == declined.payment_status == "settle_failed"
    # when the retries come due
    later = utcnow() + timedelta(seconds=BASE_S + 1)
    assert sorted(await payments.retry_failed_settlements(settings=paid, now=later)) == sorted([late.id, declined.id])
    # then only the fee was captured (with the platform's share of it) and the other hold released
    fee_intent = stripe_fake.objects[late.payment_intent_id]
    assert (fee_intent["status"], fee_intent["amount_received"]) == ("succeeded", late.cancellation_fee_minor)
    assert (await Booking.get(id=late.id)).payment_status == "partially_captured"
    assert stripe_fake.objects[declined.payment_intent_id]["status"] == "canceled"
    assert (await Booking.get(id=declined.id)).payment_status == "canceled"


async def test_a_settlement_a_webhook_already_confirmed_is_dropped_without_calling_stripe(db, paid, stripe_fake):
    # given a failed capture, then Stripe's payment_intent.succeeded for it (captured in the dashboard)
    booking, _, cleaner = await in_progress(paid, stripe_fake)
    stripe_fake.fail_next(f"/{booking.payment_intent_id}/capture")
    await bookings.complete_booking(booking.id, actor=cleaner, settings=paid)
    intent = stripe_fake.objects[booking.payment_intent_id]
    await deliver(event("payment_intent.succeeded", {**intent, "status": "succeeded",
                                                     "amount_received": intent["amount"]}), paid)
    # when the retry comes due
    assert await payments.retry_failed_settlements(settings=paid,
                                                   now=utcnow() + timedelta(seconds=BASE_S + 1)) == []
    # then nothing was captured twice and the retry is gone
    assert len(capture_keys(stripe_fake, booking)) == 1
    assert not await SettleRetry.filter(booking_id=booking.id).exists()
    assert (await Booking.get(id=booking.id)).payment_status == "captured"


async def test_the_scheduler_runs_the_retry_task(db, paid, stripe_fake):
    # given a failed capture whose retry is due at once
    quick = paid.model_copy(update={"settle_retry_base_s": 0})
    booking, _, cleaner = await in_progress(quick, stripe_fake)
    stripe_fake.fail_next(f"/{booking.payment_intent_id}/capture")
    await bookings.complete_booking(booking.id, actor=cleaner, settings=quick)
    # when the scheduler's task comes due
    periodic = [t for t in tasks(quick) if t.name == "retry_failed_settlements"]
    await register(periodic)
    await connections.get("default").execute_query(
        "UPDATE scheduled_tasks SET next_run_at = now() WHERE name = 'retry_failed_settlements'")
    assert await run_due(periodic) == ["retry_failed_settlements"]
    # then the booking is captured
    assert (await Booking.get(id=booking.id)).payment_status == "captured"


async def test_a_hold_that_expired_is_left_to_staff_at_once_and_the_completion_stands(db, paid, stripe_fake):
    # given a started booking whose hold Stripe let go (an authorisation lapses after about 7 days)
    booking, _, cleaner = await in_progress(paid, stripe_fake)
    stripe_fake.objects[booking.payment_intent_id].update(status="canceled", amount_capturable=0)
    # when the cleaner completes it
    done = await bookings.complete_booking(booking.id, actor=cleaner, settings=paid)
    # then the work is recorded as completed, the money as settle_failed with no retry, and staff are told
    assert (done.state, done.payment_status) == ("completed", "settle_failed")
    retry = await SettleRetry.get(booking_id=booking.id)
    assert retry.next_attempt_at is None and "canceled" in retry.last_error
    assert await AuditLog.filter(entity_id=str(booking.id), action="booking.payment.settle_gave_up").exists()
    assert await payments.retry_failed_settlements(settings=paid, now=utcnow() + timedelta(days=1)) == []
