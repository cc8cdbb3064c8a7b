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
from typing import Any
from uuid import UUID

import stripe
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from core.accounts import Role
from core.bookings import BookingState, Quote
from core.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from core.events import EventType
from core.ids import new_id
from core.payments import (
    INTENT_EVENTS,
    BadSignature,
    PaymentDeclined,
    PaymentError,
    PaymentStatus,
    fee_application_share,
    idempotency_key,
)
from core.settings import Settings
from storage import audit, outbox
from storage.models import Booking, PaymentCustomer, PayoutAccount, User

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
    return {"url": link.url, "expires_at": link.expires_at, "charges_enabled": account.charges_enabled}


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


async def settle(booking: Booking, *, settings: Settings) -> Booking:
    """After a transition commits: capture on completion, capture the fee of a late
    cancellation, release the hold when the booking ended for free."""
    if booking.payment_intent_id is None or booking.payment_status != PaymentStatus.AUTHORIZED:
        return booking
    changes: dict[str, Any]
    try:
        intents = _stripe(settings).v1.payment_intents
        if booking.state == BookingState.COMPLETED:
            await intents.capture_async(booking.payment_intent_id, {"amount_to_capture": booking.amount_minor},
                                        _opts("booking-capture", booking.id))
            changes = {"payment_status": PaymentStatus.CAPTURED, "captured_minor": booking.amount_minor}
        elif booking.state == BookingState.CANCELLED and booking.cancellation_fee_minor > 0:
            fee = booking.cancellation_fee_minor
            share = fee_application_share(fee_minor=fee, amount_minor=booking.amount_minor,
                                          application_fee_minor=booking.platform_fee_minor + booking.tax_minor)
            await intents.capture_async(booking.payment_intent_id,
                                        {"amount_to_capture": fee, "application_fee_amount": share},
                                        _opts("booking-capture-fee", booking.id))
            changes = {"payment_status": PaymentStatus.PARTIALLY_CAPTURED, "captured_minor": fee}
        elif booking.state in (BookingState.DECLINED, BookingState.EXPIRED, BookingState.CANCELLED):
            await intents.cancel_async(booking.payment_intent_id, None, _opts("booking-release", booking.id))
            changes = {"payment_status": PaymentStatus.CANCELED}
        else:
            return booking
    except (stripe.StripeError, Unavailable) as exc:
        # The transition has committed; the money side is marked for staff to settle by hand.
        log.error("settling booking %s failed: %s", booking.id, exc)
        changes = {"payment_status": PaymentStatus.SETTLE_FAILED}
    await Booking.filter(id=booking.id).update(**changes)
    booking.update_from_dict(changes)
    return booking


async def refund_booking(booking_id: UUID, *, actor: User, amount_minor: int, settings: Settings) -> Booking:
    """Staff give money back (a dispute upheld, a goodwill gesture), up to what was captured."""
    if actor.role != Role.ADMIN:
        raise Forbidden("only staff refund bookings")
    booking = await Booking.get_or_none(id=booking_id)
    if booking is None:
        raise NotFound("no such booking")
    if booking.payment_intent_id is None or not 0 < amount_minor <= booking.captured_minor - booking.refunded_minor:
        raise Invalid("must be more than zero and at most what was captured and not yet refunded",
                      field="amount_minor")
    refunded = booking.refunded_minor + amount_minor
    try:
        # Keyed by the refunded total it produces, so a retry cannot refund twice.
        await _stripe(settings).v1.refunds.create_async(
            {"payment_intent": booking.payment_intent_id, "amount": amount_minor,
             "metadata": {"booking_id": str(booking.id)}}, _opts("booking-refund", f"{booking.id}-{refunded}"))
    except stripe.StripeError as exc:
        raise _unavailable(exc) from None
    changes: dict[str, Any] = {"refunded_minor": refunded}
    if refunded >= booking.captured_minor:
        changes["payment_status"] = PaymentStatus.REFUNDED
    async with in_transaction() as tx:
        await Booking.filter(id=booking.id).using_db(tx).update(**changes)
        await audit.record(actor_id=actor.id, action="booking.refunded", entity_type="booking", entity_id=booking.id,
                           before={"refunded_minor": booking.refunded_minor}, after=changes, using=tx)
    booking.update_from_dict(changes)
    return booking


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
        refunded = int(obj.get("amount_refunded", 0))
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
