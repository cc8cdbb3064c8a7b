"""Money through Stripe: customers and saved cards, Connect Express payouts, holding a booking's
price on the card, capturing or releasing it, and Stripe's webhook events.

Every Stripe call goes through the official `stripe` package (async, over httpx) with an
idempotency key derived from our ids (core.payments.idempotency_key), and never from inside an
open database transaction. What a state change means for money is decided in core.payments and
core.bookings; this module only carries it out and records what Stripe says.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import stripe
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from core.accounts import Role
from core.bookings import Quote, check_reason
from core.clock import utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from core.events import EventType
from core.ids import new_id
from core.payments import (
    INTENT_EVENTS,
    BadSignature,
    PaymentDeclined,
    PaymentError,
    PaymentStatus,
    Settlement,
    check_refund,
    fee_application_share,
    idempotency_key,
    settle_retry_delay_s,
    settlement_of,
)
from core.settings import Settings
from storage import audit, outbox
from storage.models import Booking, PaymentCustomer, PayoutAccount, SettleRetry, User

log = logging.getLogger("spotless.payments")

class _HttpxClient(stripe.HTTPXClient):
    """Stripe's httpx adapter, handing the form body it already encoded to httpx as `content`:
    httpx deprecates raw bytes passed as `data`, which is what the stock adapter does."""

    def _get_request_args_kwargs(self, method: str, url: str, headers: Any, post_data: Any) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data", None)
        if body:
            kwargs["content"] = body
        return args, kwargs


_clients: dict[tuple[str, str], stripe.StripeClient] = {}


def enabled(settings: Settings) -> bool:
    """Whether bookings are charged (False only in a development setup without a Stripe key)."""
    return bool(settings.stripe_api_key)


def _stripe(settings: Settings) -> stripe.StripeClient:
    key = (settings.stripe_api_key, settings.stripe_api_base)
    if key not in _clients:
        if not enabled(settings):
            raise Unavailable("payments are not configured", dependency="stripe")
        _clients[key] = stripe.StripeClient(
            settings.stripe_api_key, base_addresses={"api": settings.stripe_api_base},
            http_client=_HttpxClient(timeout=settings.stripe_http_timeout_s), max_network_retries=2)
    return _clients[key]


def _opts(step: str, entity_id: object) -> Any:
    return {"idempotency_key": idempotency_key(step, entity_id)}


def _unavailable(exc: stripe.StripeError) -> Unavailable:
    log.warning("stripe call failed: %s", exc)
    return Unavailable("the payment provider did not answer; try again", dependency="stripe")


# --- clients: a customer and saved cards ---


async def ensure_customer(user: User, *, settings: Settings) -> str:
    """The user's Stripe customer id, created once."""
    row = await PaymentCustomer.get_or_none(user_id=user.id)
    if row is not None:
        return row.stripe_customer_id
    try:
        customer = await _stripe(settings).v1.customers.create_async(
            {"email": user.email, "name": user.name, "metadata": {"user_id": str(user.id)}},
            _opts("customer", user.id))
    except stripe.StripeError as exc:
        raise _unavailable(exc) from None
    await PaymentCustomer.get_or_create(user_id=user.id, defaults={"stripe_customer_id": customer.id})
    return (await PaymentCustomer.get(user_id=user.id)).stripe_customer_id


async def create_setup_intent(*, actor: User, settings: Settings) -> dict[str, str]:
    """A SetupIntent the app confirms with the card form, saving a card for later bookings."""
    if actor.role != Role.CLIENT:
        raise Forbidden("only client accounts save cards")
    customer = await ensure_customer(actor, settings=settings)
    try:
        params: Any = {"customer": customer, "usage": "off_session", "payment_method_types": ["card"],
                        "metadata": {"user_id": str(actor.id)}}
        intent = await _stripe(settings).v1.setup_intents.create_async(params, _opts("setup-intent", new_id()))
    except stripe.StripeError as exc:
        raise _unavailable(exc) from None
    return {"id": intent.id, "client_secret": intent.client_secret or "", "customer": customer}


# --- cleaners: a Connect Express account ---


async def start_onboarding(*, actor: User, settings: Settings) -> dict[str, Any]:
    """A one-time Stripe link where the cleaner sets up payouts (the account is made once)."""
    if actor.role != Role.CLEANER:
        raise Forbidden("only cleaner accounts receive payouts")
    client = _stripe(settings)
    try:
        account = await PayoutAccount.get_or_none(cleaner_id=actor.id)
        if account is None:
            made = await client.v1.accounts.create_async(
                {"type": "express", "email": actor.email, "metadata": {"cleaner_id": str(actor.id)},
                 "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}}},
                _opts("payout-account", actor.id))
            await PayoutAccount.get_or_create(cleaner_id=actor.id, defaults={"stripe_account_id": made.id})
            account = await PayoutAccount.get(cleaner_id=actor.id)
        link = await client.v1.account_links.create_async(
            {"account": account.stripe_account_id, "type": "account_onboarding",
             "refresh_url": settings.stripe_onboarding_refresh_url,
             "return_url": settings.stripe_onboarding_return_url}, _opts("account-link", new_id()))
    except stripe.StripeError as exc:
        raise _unavailable(exc) from None
    return {"url": link.url, "expires_at": datetime.fromtimestamp(link.expires_at, UTC).isoformat(),
            "charges_enabled": account.charges_enabled}


async def require_payable(booking: Booking) -> None:
    """A paid booking is accepted only by a cleaner whose payout account may take charges."""
    if booking.payment_intent_id is None:
        return
    account = await PayoutAccount.get_or_none(cleaner_id=booking.cleaner_id)
    if account is None or not account.charges_enabled:
        raise Conflict("finish setting up payouts before accepting paid bookings",
                       code=PaymentError.CLEANER_NOT_PAYABLE)


# --- a booking's money ---


async def authorize(*, booking_id: UUID, client: User, cleaner_id: UUID, quote: Quote, payment_method_id: str,
                    settings: Settings) -> str:
    """Hold the booking's price on the client's card: a manual-capture destination charge to
    the cleaner, the platform's fee kept as the application fee. Returns the intent id."""
    account = await PayoutAccount.get_or_none(cleaner_id=cleaner_id)
    if account is None:
        raise Conflict("this cleaner cannot take paid bookings yet", code=PaymentError.CLEANER_NOT_PAYABLE)
    customer = await ensure_customer(client, settings=settings)
    try:
        intent = await _stripe(settings).v1.payment_intents.create_async(
            {"amount": quote.amount_minor, "currency": quote.currency.lower(), "customer": customer,
             "payment_method": payment_method_id, "capture_method": "manual", "confirm": True,
             "off_session": True, "application_fee_amount": quote.application_fee_minor,
             # so that extra hours agreed at completion can raise the hold (increment_authorization)
             "payment_method_options": {"card": {"request_incremental_authorization": "if_available"}},
             "transfer_data": {"destination": account.stripe_account_id},
             "metadata": {"booking_id": str(booking_id)}}, _opts("booking-authorize", booking_id))
    except stripe.CardError as exc:
        code = exc.code if exc.code == PaymentError.AUTHENTICATION_REQUIRED else PaymentError.CARD_DECLINED
        raise PaymentDeclined(exc.user_message or "the card was declined", code=code) from None
    except stripe.StripeError as exc:
        raise _unavailable(exc) from None
    return intent.id


async def release(intent_id: str, *, booking_id: UUID, settings: Settings) -> None:
    """Let go of a hold (a booking that was never written, or one that ended for free)."""
    try:
        await _stripe(settings).v1.payment_intents.cancel_async(intent_id, None, _opts("booking-release", booking_id))
    except stripe.StripeError as exc:
        log.warning("could not cancel payment intent %s: %s", intent_id, exc)


class _GiveUp(Exception):
    """The intent is in a state from which this step can never succeed."""


async def settle(booking: Booking, *, settings: Settings) -> Booking:
    """After a transition commits: capture on completion, capture the fee of a late
    cancellation, release the hold when the booking ended for free. A step Stripe refuses
    marks the payment `settle_failed` and schedules retries (retry_failed_settlements)."""
    if booking.payment_intent_id is None or booking.payment_status != PaymentStatus.AUTHORIZED:
        return booking
    step = settlement_of(state=booking.state, cancellation_fee_minor=booking.cancellation_fee_minor)
    if step == Settlement.NONE:
        return booking
    try:
        changes = await _carry_out(booking, step, attempt=0, settings=settings)
    except (stripe.StripeError, Unavailable, _GiveUp) as exc:
        # The transition has committed; the money side is retried with backoff, then left to staff
        # (at once when the intent can never be settled, e.g. a hold that expired).
        log.error("settling booking %s failed: %s", booking.id, exc)
        changes = {"payment_status": PaymentStatus.SETTLE_FAILED}
        delay_s = settle_retry_delay_s(0, base_s=settings.settle_retry_base_s, max_s=settings.settle_retry_max_s)
        retry_at = None if isinstance(exc, _GiveUp) else utcnow() + timedelta(seconds=delay_s)
        async with in_transaction() as tx:
            await Booking.filter(id=booking.id).using_db(tx).update(**changes)
            await SettleRetry.update_or_create(
                booking_id=booking.id, using_db=tx,
                defaults={"attempts": 0, "next_attempt_at": retry_at, "last_error": str(exc)[:2000]})
            if retry_at is None:
                await _record_gave_up(booking.id, 0, exc, using=tx)
    else:
        async with in_transaction() as tx:
            await Booking.filter(id=booking.id).using_db(tx).update(**changes)
            await _record_shortfall(booking, changes, using=tx)
    booking.update_from_dict(changes)
    return booking


async def _capture(booking: Booking, suffix: str, *, attempt: int, settings: Settings) -> Any:
    """Capture a completed booking's final price. Above what the card holds (extra hours), the
    hold is raised first by an incremental authorisation; when the card refuses it, the hold is
    captured and the rest recorded as `capture_shortfall_minor`: never more than is held."""
    intents = _stripe(settings).v1.payment_intents
    intent_id = str(booking.payment_intent_id)
    wanted, fee = booking.amount_minor, booking.platform_fee_minor + booking.tax_minor
    held = booking.held_minor
    if attempt > 0:  # an earlier attempt may have raised the hold without our hearing of it
        current = await intents.retrieve_async(intent_id)
        if current.status == "requires_capture":
            held = int(current.amount_capturable or 0)
    if wanted > held:
        try:
            raised = await intents.increment_authorization_async(
                intent_id, {"amount": wanted, "application_fee_amount": fee},
                _opts("booking-increment", f"{suffix}-{wanted}"))
            held = int(raised.amount_capturable or 0)
        except (stripe.CardError, stripe.InvalidRequestError) as exc:
            if isinstance(exc, stripe.InvalidRequestError) and exc.code == "payment_intent_unexpected_state":
                raise  # captured or cancelled meanwhile: read back by the caller
            log.warning("stripe refused to raise the hold of booking %s to %d: %s", booking.id, wanted, exc)
    amount = min(wanted, held)
    if amount < wanted:
        fee = fee_application_share(fee_minor=amount, amount_minor=wanted, application_fee_minor=fee)
    return await intents.capture_async(intent_id, {"amount_to_capture": amount, "application_fee_amount": fee},
                                       _opts("booking-capture", suffix))


async def _record_shortfall(booking: Booking, changes: dict[str, Any], *, using: BaseDBAsyncClient) -> None:
    """A final price the card would not cover: audited and announced, for staff to follow up."""
    shortfall = int(changes.get("capture_shortfall_minor") or 0)
    if shortfall <= 0:
        return
    await audit.record(actor_id=None, action="booking.payment.shortfall", entity_type="booking",
                       entity_id=booking.id, after={"amount_minor": booking.amount_minor,
                                                    "captured_minor": changes.get("captured_minor"),
                                                    "shortfall_minor": shortfall}, using=using)
    await outbox.enqueue(EventType.BOOKING_PAYMENT_UPDATED,
                         {**_payment_event(booking, "capture_shortfall"), "shortfall_minor": shortfall,
                          "amount_minor": booking.amount_minor}, using=using)


async def _carry_out(booking: Booking, step: Settlement, *, attempt: int, settings: Settings) -> dict[str, Any]:
    """Do one settlement step at Stripe and return the booking's new payment columns.

    Attempt 0 is the call made when the booking moved; each retry is a new call with its own
    key (Stripe replays a key's first answer, failures included). A step that already happened
    (an earlier attempt reached Stripe but its answer did not reach us) is read back instead."""
    intents = _stripe(settings).v1.payment_intents
    intent_id = str(booking.payment_intent_id)
    suffix = f"{booking.id}" if attempt == 0 else f"{booking.id}-retry-{attempt}"
    try:
        if step == Settlement.CAPTURE:
            intent = await _capture(booking, suffix, attempt=attempt, settings=settings)
        elif step == Settlement.CAPTURE_FEE:
            fee = booking.cancellation_fee_minor
            share = fee_application_share(fee_minor=fee, amount_minor=booking.amount_minor,
                                          application_fee_minor=booking.platform_fee_minor + booking.tax_minor)
            intent = await intents.capture_async(intent_id, {"amount_to_capture": fee, "application_fee_amount": share},
                                                 _opts("booking-capture-fee", suffix))
        else:
            intent = await intents.cancel_async(intent_id, None, _opts("booking-release", suffix))
    except stripe.InvalidRequestError as exc:
        if exc.code != "payment_intent_unexpected_state":
            raise
        intent = await intents.retrieve_async(intent_id)
        wanted = "canceled" if step == Settlement.RELEASE else "succeeded"
        if intent.status != wanted:
            raise _GiveUp(f"the payment intent is {intent.status}; it cannot be settled any more") from exc
    if step == Settlement.RELEASE:
        return {"payment_status": PaymentStatus.CANCELED}
    received = int(intent.amount_received or 0)
    full = step == Settlement.CAPTURE and received >= booking.amount_minor
    changes: dict[str, Any] = {"payment_status": PaymentStatus.CAPTURED if full else PaymentStatus.PARTIALLY_CAPTURED,
                               "captured_minor": received}
    if step == Settlement.CAPTURE:
        changes.update(held_minor=max(booking.held_minor, int(intent.amount or 0)),
                       capture_shortfall_minor=max(0, booking.amount_minor - received))
    return changes


async def retry_failed_settlements(*, settings: Settings, now: datetime | None = None,
                                   batch: int = 50) -> list[UUID]:
    """Retry the settlements that are due; return the bookings settled by this pass.

    Each due row is claimed under its lock and its attempt counted and pushed back (a lease)
    before Stripe is called outside any transaction, so two runners never make the same
    attempt, and a runner that dies mid-call leaves the row to be retried later."""
    now = now or utcnow()
    async with in_transaction() as tx:
        due = await SettleRetry.filter(next_attempt_at__lte=now).using_db(tx).select_for_update(
            skip_locked=True).order_by("next_attempt_at").limit(batch)
        claimed: list[tuple[UUID, int]] = []
        for row in due:
            row.attempts += 1
            row.next_attempt_at = now + timedelta(seconds=settle_retry_delay_s(
                row.attempts, base_s=settings.settle_retry_base_s, max_s=settings.settle_retry_max_s))
            await row.save(using_db=tx, update_fields=["attempts", "next_attempt_at", "updated_at"])
            claimed.append((row.booking_id, row.attempts))
    settled: list[UUID] = []
    for booking_id, attempt in claimed:
        if await _retry_one(booking_id, attempt, settings=settings):
            settled.append(booking_id)
    return settled


async def _retry_one(booking_id: UUID, attempt: int, *, settings: Settings) -> bool:
    """One claimed attempt; True when it settled the booking."""
    booking = await Booking.get_or_none(id=booking_id)
    step = Settlement.NONE
    if booking is not None and booking.payment_status == PaymentStatus.SETTLE_FAILED:
        step = settlement_of(state=booking.state, cancellation_fee_minor=booking.cancellation_fee_minor)
    if booking is None or step == Settlement.NONE:  # settled meanwhile (a webhook, staff)
        await SettleRetry.filter(booking_id=booking_id).delete()
        return False
    try:
        changes = await _carry_out(booking, step, attempt=attempt, settings=settings)
    except (stripe.StripeError, Unavailable, _GiveUp) as exc:
        gave_up = isinstance(exc, _GiveUp) or attempt >= settings.settle_max_attempts
        log.warning("settle retry %d of booking %s failed%s: %s", attempt, booking_id,
                    "; left to staff" if gave_up else "", exc)
        async with in_transaction() as tx:
            fields: dict[str, Any] = {"last_error": str(exc)[:2000]}
            if gave_up:
                fields["next_attempt_at"] = None
                await _record_gave_up(booking_id, attempt, exc, using=tx)
            await SettleRetry.filter(booking_id=booking_id).using_db(tx).update(**fields)
        return False
    async with in_transaction() as tx:
        await SettleRetry.filter(booking_id=booking_id).using_db(tx).delete()
        if not await Booking.filter(id=booking_id, payment_status=PaymentStatus.SETTLE_FAILED).using_db(tx).update(
                **changes):
            return False  # a webhook recorded the outcome first
        await audit.record(actor_id=None, action="booking.payment.settled", entity_type="booking",
                           entity_id=booking_id, before={"payment_status": PaymentStatus.SETTLE_FAILED},
                           after={**changes, "attempt": attempt}, using=tx)
        booking.update_from_dict(changes)
        await outbox.enqueue(EventType.BOOKING_PAYMENT_UPDATED, _payment_event(booking, "settle_retry"), using=tx)
        await _record_shortfall(booking, changes, using=tx)
    return True


async def _record_gave_up(booking_id: UUID, attempts: int, exc: Exception, *, using: BaseDBAsyncClient) -> None:
    await audit.record(actor_id=None, action="booking.payment.settle_gave_up", entity_type="booking",
                       entity_id=booking_id, after={"attempts": attempts, "error": str(exc)[:500]}, using=using)


def _payment_event(booking: Booking, reason: str) -> dict[str, Any]:
    return {"booking_id": str(booking.id), "state": booking.state, "client_id": str(booking.client_id),
            "cleaner_id": str(booking.cleaner_id), "starts_at": booking.starts_at.isoformat(), "by": "system",
            "reason": reason}


async def refund_booking(booking_id: UUID, *, actor: User, amount_minor: int | None = None, reason: str,
                         settings: Settings) -> Booking:
    """Staff give money back (a dispute upheld, a goodwill gesture): `amount_minor`, or all that
    was captured and not yet refunded. Each Stripe refund is recorded once by its id."""
    if actor.role != Role.ADMIN:
        raise Forbidden("only staff refund bookings")
    kept = check_reason(reason, required=True)
    booking = await Booking.get_or_none(id=booking_id)
    if booking is None:
        raise NotFound("no such booking")
    if booking.payment_intent_id is None:
        raise Conflict("this booking was not paid by card", code=PaymentError.NOTHING_CAPTURED)
    amount = check_refund(amount_minor=amount_minor, captured_minor=booking.captured_minor,
                          refunded_minor=booking.refunded_minor)
    try:
        # Keyed by the refunded total it produces: a retried request cannot refund twice.
        refund = await _stripe(settings).v1.refunds.create_async(
            {"payment_intent": booking.payment_intent_id, "amount": amount,
             "metadata": {"booking_id": str(booking.id), "reason": kept[:500]}},
            _opts("booking-refund", f"{booking.id}-{booking.refunded_minor + amount}"))
    except stripe.InvalidRequestError as exc:
        log.warning("stripe refused a refund of booking %s: %s", booking.id, exc)
        if exc.code == "amount_too_large":
            raise Invalid("is more than Stripe can still refund", field="amount_minor") from None
        raise Conflict(f"Stripe refused the refund: {exc.user_message or exc.code or 'invalid request'}") from None
    except stripe.StripeError as exc:
        raise _unavailable(exc) from None
    async with in_transaction() as tx:
        locked = await Booking.filter(id=booking.id).using_db(tx).select_for_update().get()
        new = await tx.execute_query_dict(
            "INSERT INTO booking_refunds (id, booking_id, amount_minor, reason, actor_id) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (id) DO NOTHING RETURNING id", [refund.id, booking.id, int(refund.amount), kept, actor.id])
        # A replayed refund (new == []) was recorded before; the total is still brought up to date.
        ours = await tx.execute_query_dict(
            "SELECT COALESCE(sum(amount_minor), 0)::int AS total FROM booking_refunds WHERE booking_id = $1",
            [booking.id])
        total = max(locked.refunded_minor, int(ours[0]["total"]))
        changes: dict[str, Any] = {"refunded_minor": total} if total != locked.refunded_minor else {}
        if total >= locked.captured_minor and locked.payment_status != PaymentStatus.REFUNDED:
            changes["payment_status"] = PaymentStatus.REFUNDED
        if not new and not changes:
            return locked
        before = {"refunded_minor": locked.refunded_minor, "payment_status": locked.payment_status}
        locked.update_from_dict(changes)
        if changes:
            await locked.save(update_fields=[*changes, "updated_at"], using_db=tx)
        await audit.record(actor_id=actor.id, action="booking.refunded", entity_type="booking", entity_id=booking.id,
                           before=before, after={**changes, "amount_minor": int(refund.amount), "reason": kept,
                                                 "refund_id": refund.id}, using=tx)
        await outbox.enqueue(EventType.BOOKING_PAYMENT_UPDATED, {**_payment_event(locked, "refund"), "by": "admin"},
                             using=tx)
    return locked


# --- webhooks ---


async def receive_webhook(*, payload: bytes, signature: str, settings: Settings) -> tuple[str, bool]:
    """Verify and apply one Stripe event, once. Returns (event id, whether this delivery was new)."""
    if not settings.stripe_webhook_secret:
        raise BadSignature("webhooks are not configured")
    try:
        stripe.Webhook.construct_event(payload, signature, settings.stripe_webhook_secret,
                                       tolerance=settings.stripe_webhook_tolerance_s)
        event = json.loads(payload)
        event_id, event_type, obj = str(event["id"]), str(event["type"]), dict(event["data"]["object"])
    except (ValueError, KeyError, TypeError, stripe.SignatureVerificationError):
        raise BadSignature() from None
    async with in_transaction() as tx:
        fresh = await tx.execute_query_dict(
            "INSERT INTO stripe_events (id, type, payload, handled) VALUES ($1, $2, $3::jsonb, false) "
            "ON CONFLICT (id) DO NOTHING RETURNING id", [event_id, event_type, payload.decode()])
        if not fresh:
            return event_id, False
        if await _apply(event_type, obj, tx):
            await tx.execute_query("UPDATE stripe_events SET handled = true WHERE id = $1", [event_id])
    return event_id, True


_FINAL = {PaymentStatus.CAPTURED, PaymentStatus.PARTIALLY_CAPTURED, PaymentStatus.CANCELED,
          PaymentStatus.REFUNDED, PaymentStatus.DISPUTED}


async def _apply(event_type: str, obj: dict[str, Any], tx: BaseDBAsyncClient) -> bool:
    """Bring our records in line with one event; False when it is not one we act on."""
    if event_type == "account.updated":
        updated = await PayoutAccount.filter(stripe_account_id=obj.get("id")).using_db(tx).update(
            charges_enabled=bool(obj.get("charges_enabled")), payouts_enabled=bool(obj.get("payouts_enabled")),
            details_submitted=bool(obj.get("details_submitted")))
        return bool(updated)
    intent_id = obj.get("id") if event_type in INTENT_EVENTS else obj.get("payment_intent")
    if event_type not in INTENT_EVENTS and event_type not in {"charge.refunded", "charge.dispute.created"}:
        return False
    booking = await Booking.filter(payment_intent_id=intent_id).using_db(tx).select_for_update().first()
    if booking is None:
        return False
    changes: dict[str, Any] = {}
    if event_type == "payment_intent.succeeded":
        received = int(obj.get("amount_received", 0))
        changes = {"captured_minor": received, "payment_status": PaymentStatus.CAPTURED
                   if received >= booking.amount_minor else PaymentStatus.PARTIALLY_CAPTURED}
    elif event_type in INTENT_EVENTS:
        status = INTENT_EVENTS[event_type]
        if booking.payment_status in _FINAL and status in (PaymentStatus.AUTHORIZED, PaymentStatus.FAILED):
            return True  # a late, out-of-order delivery of an earlier step
        changes = {"payment_status": status}
    elif event_type == "charge.refunded":
        # Stripe's running total; never below the refunds we recorded ourselves.
        refunded = max(booking.refunded_minor, int(obj.get("amount_refunded", 0)))
        changes = {"refunded_minor": refunded}
        if refunded >= booking.captured_minor:
            changes["payment_status"] = PaymentStatus.REFUNDED
    else:  # charge.dispute.created
        changes = {"payment_status": PaymentStatus.DISPUTED}
    before = booking.payment_status
    booking.update_from_dict(changes)
    await booking.save(update_fields=[*changes, "updated_at"], using_db=tx)
    await audit.record(actor_id=None, action=f"booking.payment.{event_type}", entity_type="booking",
                       entity_id=booking.id, before={"payment_status": before}, after=changes, using=tx)
    await outbox.enqueue(EventType.BOOKING_PAYMENT_UPDATED, {
        "booking_id": str(booking.id), "state": booking.state, "client_id": str(booking.client_id),
        "cleaner_id": str(booking.cleaner_id), "starts_at": booking.starts_at.isoformat(), "by": "system",
        "reason": event_type}, using=tx)
    return True
