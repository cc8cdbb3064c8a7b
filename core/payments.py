"""Payment rules: idempotency keys, what a late fee captures, what Stripe's events mean. Pure.

storage/payments.py talks to Stripe; this module only decides. Keys are derived from our own ids,
so a retried call (a crash, a timeout, a redelivered job) is the same call to Stripe.
"""

from __future__ import annotations

from enum import StrEnum

from core.bookings import BookingState
from core.errors import Conflict, Invalid, SpotlessError


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
    NOTHING_CAPTURED = "nothing_captured"
    NOTHING_TO_REFUND = "nothing_to_refund"


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


class Settlement(StrEnum):
    """What a booking's move means for the hold on the card."""

    CAPTURE = "capture"  # completed: take the price
    CAPTURE_FEE = "capture_fee"  # cancelled late: take only the fee, release the rest
    RELEASE = "release"  # ended for free: let the hold go
    NONE = "none"  # still under way, or already settled


def settlement_of(*, state: str, cancellation_fee_minor: int) -> Settlement:
    """The money step a booking in `state` calls for (once, while its hold is still open)."""
    if state in (BookingState.COMPLETED, BookingState.DISPUTED):  # a dispute is settled by refunds
        return Settlement.CAPTURE
    if state == BookingState.CANCELLED and cancellation_fee_minor > 0:
        return Settlement.CAPTURE_FEE
    if state in (BookingState.DECLINED, BookingState.EXPIRED, BookingState.CANCELLED):
        return Settlement.RELEASE
    return Settlement.NONE


def settle_retry_delay_s(attempts: int, *, base_s: int, max_s: int) -> int:
    """The wait before retry number `attempts + 1`: doubling from `base_s`, at most `max_s`."""
    return int(min(max_s, base_s * 2 ** min(attempts, 30)))


def check_refund(*, amount_minor: int | None, captured_minor: int, refunded_minor: int) -> int:
    """What a refund gives back: `amount_minor`, or everything not yet refunded when it is None.
    Conflict when nothing was captured or all of it was refunded; Invalid above what is left."""
    if captured_minor <= 0:
        raise Conflict("nothing was captured for this booking", code=PaymentError.NOTHING_CAPTURED)
    refundable = captured_minor - refunded_minor
    if amount_minor is None:
        if refundable <= 0:
            raise Conflict("everything captured was already refunded", code=PaymentError.NOTHING_TO_REFUND)
        return refundable
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise Invalid("must be a whole number of minor units above zero", field="amount_minor")
    if amount_minor > refundable:
        raise Invalid(f"must be at most {refundable}, what was captured and not yet refunded",
                      field="amount_minor")
    return amount_minor


INTENT_EVENTS: dict[str, PaymentStatus] = {
    "payment_intent.amount_capturable_updated": PaymentStatus.AUTHORIZED,
    "payment_intent.succeeded": PaymentStatus.CAPTURED,
    "payment_intent.payment_failed": PaymentStatus.FAILED,
    "payment_intent.canceled": PaymentStatus.CANCELED,
}
