"""Payment rules: idempotency keys, what a late fee captures, what Stripe's events mean. Pure.

storage/payments.py talks to Stripe; this module only decides. Keys are derived from our own ids,
so a retried call (a crash, a timeout, a redelivered job) is the same call to Stripe.
"""

from __future__ import annotations

from enum import StrEnum

from core.errors import SpotlessError


class PaymentStatus(StrEnum):
    """A booking's money, as we last knew it (Stripe's webhooks keep it current)."""

    NONE = "none"  # payments are off in this deployment (dev)
    AUTHORIZED = "authorized"  # held on the card, to capture on completion
    CAPTURED = "captured"
    PARTIALLY_CAPTURED = "partially_captured"  # a late-cancellation fee
    CANCELED = "canceled"  # the hold was released
    FAILED = "failed"
    REFUNDED = "refunded"
    DISPUTED = "disputed"  # the cardholder's bank opened a chargeback
    SETTLE_FAILED = "settle_failed"  # Stripe refused the capture or cancel; staff follow up


class PaymentError(StrEnum):
    CARD_DECLINED = "card_declined"
    AUTHENTICATION_REQUIRED = "authentication_required"
    CLEANER_NOT_PAYABLE = "cleaner_not_payable"
    BAD_SIGNATURE = "bad_signature"


class PaymentDeclined(SpotlessError):
    status = 402
    code = PaymentError.CARD_DECLINED
    title = "The card was declined"


class BadSignature(SpotlessError):
    status = 400
    code = PaymentError.BAD_SIGNATURE
    title = "The webhook signature is not valid"


def idempotency_key(step: str, entity_id: object) -> str:
    """The key of one step on one of our entities, e.g. ('booking-authorize', booking.id)."""
    return f"spotless-{step}-{entity_id}"


def fee_application_share(*, fee_minor: int, amount_minor: int, application_fee_minor: int) -> int:
    """The platform's part of a partial capture: the same proportion it takes of a full one."""
    if amount_minor <= 0:
        return 0
    return min(fee_minor, (fee_minor * application_fee_minor + amount_minor // 2) // amount_minor)


INTENT_EVENTS: dict[str, PaymentStatus] = {
    "payment_intent.amount_capturable_updated": PaymentStatus.AUTHORIZED,
    "payment_intent.succeeded": PaymentStatus.CAPTURED,
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELED,
}
