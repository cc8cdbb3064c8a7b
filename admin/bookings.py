"""Bookings in the dashboard: find one, read it with its timeline, cancel it or mark it disputed.

Read-only as rows: a booking moves only through the actions of `storage.bookings`, which check
the state machine and the fees in core/bookings.py and write the timeline, audit and outbox
rows. Staff cancel through `cancel_booking` (core.bookings decides the fee: a cancellation by
staff is free) and mark disputes through `dispute_booking`; both need a reason.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette_admin import (
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
from core.errors import SpotlessError
from core.payments import PaymentStatus
from core.settings import Settings
from storage import bookings
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
        IntegerField("amount_minor", label="Price (minor units)"),
        StringField("currency", exclude_from_list=True),
        EnumField("payment_status", choices=[(str(s), str(s)) for s in PaymentStatus], exclude_from_list=True),
        StringField("cancelled_by", exclude_from_list=True),
        TextAreaField("cancel_reason", exclude_from_list=True),
        IntegerField("cancellation_fee_minor", label="Cancellation fee (minor units)", exclude_from_list=True),
        TextAreaField("dispute_reason", exclude_from_list=True),
        DateTimeField("created_at", label="Requested"),
    ]
    # Text search runs over the id and the address; the other fields are offered as filters.
    searchable_fields = ["id", "address", "state", "starts_at", "client", "cleaner", "service", "created_at"]
    sortable_fields = ["state", "starts_at", "amount_minor", "created_at"]
    fields_default_sort = [("starts_at", True)]
    inlines = [BookingTimeline]
    row_actions = ["view", "cancel", "dispute"]
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
                                     seconds=self.settings.booking_dispute_window_s))
            except SpotlessError:
                return False
            return True
        return await super().is_row_action_allowed_for_obj(request, name, obj)

    @row_action(name="cancel", text="Cancel", icon_class="fa fa-ban",
                confirmation="Cancel this booking? A cancellation by staff costs the client nothing.",
                submit_btn_text="Cancel booking", form=reason_form("Reason (both parties are told it)"))
    async def cancel_one(self, request: Request, pk: Any) -> None:
        await bookings.cancel_booking(self._key(pk), actor=current_staff(request),
                                      reason=await form_reason(request), settings=self.settings)
        flash(request, "Booking cancelled.", "success")

    @row_action(name="dispute", text="Mark disputed", icon_class="fa fa-flag",
                confirmation="Mark this booking as disputed?", submit_btn_text="Mark disputed",
                form=reason_form("What is disputed"))
    async def dispute_one(self, request: Request, pk: Any) -> None:
        await bookings.dispute_booking(self._key(pk), actor=current_staff(request),
                                       reason=await form_reason(request), settings=self.settings)
        flash(request, "Booking marked as disputed.", "success")


async def form_reason(request: Request) -> str:
    async with request.form() as form:
        return str(form.get("reason") or "")
