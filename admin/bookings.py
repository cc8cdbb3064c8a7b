"""Bookings in the dashboard: find one, read it with its timeline, cancel it, mark it disputed,
or refund what it captured.

Read-only as rows: a booking moves only through the actions of `storage.bookings`, which check
the state machine and the fees in core/bookings.py and write the timeline, audit and outbox
rows. Staff cancel through `cancel_booking`, free or, when they tick "with fee", charging the
client the late-cancellation fee the policy would (core.bookings decides it), and mark disputes through `dispute_booking`; both need a reason. Refunds go
through `storage.payments.refund_booking` (the one refund action, also behind the REST API).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette_admin import (
    BooleanField,
    DateTimeField,
    EnumField,
    HasOne,
    IntegerField,
    StringField,
    TextAreaField,
    UUIDField,
    flash,
    row_action,
)
from starlette_admin.contrib.tortoise import InlineModelView

from admin.auth import current_staff
from admin.tortoise_view import TortoiseModelView
from core.bookings import Action, BookingState, Party, check_transition
from core.clock import utcnow
from core.errors import Invalid, SpotlessError
from core.payments import PaymentStatus
from core.settings import Settings
from storage import bookings, payments
from storage.models import Booking, BookingTransition

MOVES = {"cancel": Action.CANCEL, "dispute": Action.DISPUTE}
STATES = [(str(s), str(s).replace("_", " ").capitalize()) for s in BookingState]


def reason_form(label: str) -> str:
    return f"""
<form>
  <div class="mt-3">
    <label class="form-label" for="booking-reason">{label}</label>
    <textarea class="form-control" id="booking-reason" name="reason" maxlength="500" rows="2"></textarea>
  </div>
</form>
"""


CANCEL_FORM = """
<form>
  <div class="mt-3">
    <label class="form-label" for="booking-reason">Reason (both parties are told it)</label>
    <textarea class="form-control" id="booking-reason" name="reason" maxlength="500" rows="2"></textarea>
  </div>
  <div class="mt-3 form-check">
    <input class="form-check-input" type="checkbox" id="booking-charge-fee" name="charge_late_fee" value="yes">
    <label class="form-check-label" for="booking-charge-fee">With fee: charge the client the late-cancellation
      fee (only when a late cancellation by the client would cost one)</label>
  </div>
</form>
"""


REFUND_FORM = """
<form>
  <div class="mt-3">
    <label class="form-label" for="refund-amount">Amount in minor units (blank: all that is left)</label>
    <input class="form-control" id="refund-amount" name="amount_minor" type="number" min="1" step="1">
  </div>
  <div class="mt-3">
    <label class="form-label" for="refund-reason">Reason (kept in the audit trail)</label>
    <textarea class="form-control" id="refund-reason" name="reason" maxlength="500" rows="2"></textarea>
  </div>
</form>
"""


def parse_amount_minor(raw: object) -> int | None:
    """The refund form's amount: blank for everything left, else a whole number of minor units."""
    text = str(raw or "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise Invalid("must be a whole number of minor units, or blank for all that is left", field="amount_minor")
    return int(text)


class BookingTimeline(InlineModelView):
    """The booking's transitions, oldest first, on its detail page."""

    model = BookingTransition  # type: ignore[misc]  # starlette-admin declares it a ClassVar
    fk_attr = "booking"
    menu_label = "Timeline"
    fields = [
        DateTimeField("created_at", label="When"),
        StringField("from_state", label="From"),
        StringField("to_state", label="To"),
        StringField("party", label="By"),
        HasOne("actor", key="user", label="Account"),
        TextAreaField("reason"),
    ]

    async def find_by_parent(self, request: Request, parent: Any) -> Any:
        steps = await bookings.transitions_of(parent)
        await BookingTransition.fetch_for_list(steps, "actor")
        return steps


class BookingView(TortoiseModelView):
    writable = False
    menu_label = "Bookings"
    icon = "fa fa-calendar-check"
    fields = [
        UUIDField("id", label="Id"),
        EnumField("state", choices=STATES),
        DateTimeField("starts_at", label="Starts"),
        DateTimeField("ends_at", label="Ends", exclude_from_list=True),
        HasOne("client", key="user"),
        HasOne("cleaner", key="user"),
        HasOne("service", key="service-type"),
        TextAreaField("address"),
        StringField("city"),
        IntegerField("amount_minor", label="Price (minor units)"),
        IntegerField("quoted_amount_minor", label="Quoted price (minor units)", exclude_from_list=True),
        StringField("currency", exclude_from_list=True),
        EnumField("payment_status", choices=[(str(s), str(s)) for s in PaymentStatus]),
        StringField("cancelled_by", exclude_from_list=True),
        TextAreaField("cancel_reason", exclude_from_list=True),
        IntegerField("cancellation_fee_minor", label="Cancellation fee (minor units)", exclude_from_list=True),
        BooleanField("late_cancellation", label="Cancelled late", exclude_from_list=True),
        BooleanField("counts_against_cleaner", label="Strike (cleaner cancelled late)"),
        IntegerField("captured_minor", label="Captured (minor units)", exclude_from_list=True),
        IntegerField("capture_shortfall_minor", label="Not covered by the card (minor units)",
                     exclude_from_list=True),
        IntegerField("refunded_minor", label="Refunded (minor units)", exclude_from_list=True),
        TextAreaField("dispute_reason", exclude_from_list=True),
        DateTimeField("created_at", label="Requested"),
    ]
    # Text search runs over the id and the address; the other fields are offered as filters.
    searchable_fields = ["id", "address", "state", "payment_status", "starts_at", "client", "cleaner", "service",
                         "created_at", "counts_against_cleaner", "city"]
    sortable_fields = ["state", "starts_at", "amount_minor", "created_at"]
    fields_default_sort = [("starts_at", True)]
    inlines = [BookingTimeline]
    row_actions = ["view", "cancel", "dispute", "refund"]
    actions: list[str] = []

    def __init__(self, settings: Settings) -> None:
        super().__init__(Booking)
        self.settings = settings

    async def repr(self, obj: Any, request: Request) -> str:
        return f"{obj.state} booking {obj.id}"

    async def is_row_action_allowed_for_obj(self, request: Request, name: str, obj: Any) -> bool:
        # Offered only where core.bookings would allow the move; the action still checks it.
        if name in MOVES:
            try:
                check_transition(MOVES[name], state=obj.state, party=Party.ADMIN, now=utcnow(),
                                 completed_at=obj.completed_at, dispute_window=timedelta(
                                     seconds=self.settings.booking_dispute_window_s),
                                 starts_at=obj.starts_at, on_the_way_lead=timedelta(
                                     seconds=self.settings.booking_on_the_way_lead_s))
            except SpotlessError:
                return False
            return True
        if name == "refund":  # offered while something captured is not yet refunded
            return bool(obj.payment_intent_id) and obj.captured_minor > obj.refunded_minor
        return await super().is_row_action_allowed_for_obj(request, name, obj)

    @row_action(name="cancel", text="Cancel", icon_class="fa fa-ban",
                confirmation="Cancel this booking? Without a fee it costs the client nothing.",
                submit_btn_text="Cancel booking", form=CANCEL_FORM)
    async def cancel_one(self, request: Request, pk: Any) -> None:
        async with request.form() as form:
            reason, with_fee = str(form.get("reason") or ""), form.get("charge_late_fee") == "yes"
        booking = await bookings.cancel_booking(self._key(pk), actor=current_staff(request), reason=reason,
                                                settings=self.settings, charge_late_fee=with_fee)
        flash(request, f"Booking cancelled with a fee of {booking.cancellation_fee_minor} {booking.currency} "
                       "minor units." if with_fee else "Booking cancelled.", "success")

    @row_action(name="dispute", text="Mark disputed", icon_class="fa fa-flag",
                confirmation="Mark this booking as disputed?", submit_btn_text="Mark disputed",
                form=reason_form("What is disputed"))
    async def dispute_one(self, request: Request, pk: Any) -> None:
        await bookings.dispute_booking(self._key(pk), actor=current_staff(request),
                                       reason=await form_reason(request), settings=self.settings)
        flash(request, "Booking marked as disputed.", "success")

    @row_action(name="refund", text="Refund", icon_class="fa fa-undo",
                confirmation="Refund this booking's client through Stripe?", submit_btn_text="Refund",
                form=REFUND_FORM)
    async def refund_one(self, request: Request, pk: Any) -> None:
        async with request.form() as form:
            amount, reason = parse_amount_minor(form.get("amount_minor")), str(form.get("reason") or "")
        booking = await payments.refund_booking(self._key(pk), actor=current_staff(request), amount_minor=amount,
                                                reason=reason, settings=self.settings)
        flash(request, f"Refunded; {booking.refunded_minor} of {booking.captured_minor} "
                       f"{booking.currency} minor units are now refunded.", "success")


async def form_reason(request: Request) -> str:
    async with request.form() as form:
        return str(form.get("reason") or "")
