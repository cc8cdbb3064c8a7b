"""/api/v1/bookings: quote, book, list, read and move bookings. Thin handlers: parse,
authorise, call storage.bookings, shape the response. Who may do what is core.bookings' call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from core.accounts import Role
from core.bookings import BookingState, Party, Quote, navigation_links, parse_hours
from core.errors import Invalid, NotFound
from core.pagination import parse_limit
from core.settings import Settings
from edge.accounts import settings_of
from edge.auth import authenticated, current_session
from edge.responses import BookingAnswer, BookingPage, QuoteAnswer, json_response
from edge.staff import parse_uuid
from edge.supply import money
from edge.validation import (
    Body,
    RawSchema,
    openapi_body,
    paged,
    parse_body,
)
from storage import bookings
from storage.models import Booking, BookingTransition, User

bp = Blueprint("bookings", url_prefix="/api/v1/bookings")


class QuoteBody(Body):
    cleaner_id: str = Field(max_length=64)
    service: str = Field(max_length=40)
    hours: Any = Field(description="a multiple of 0.25, as a number or a string")


class BookingBody(QuoteBody):
    start: str = Field(max_length=64, description="ISO 8601 with an offset, on a whole minute")
    address: str = Field(max_length=1000)
    city: str | None = Field(default=None, max_length=100,
                             description="the town, from the app's geocoder; read off the address when absent")
    lat: float | None = None
    lng: float | None = None
    notes: str = Field(default="", max_length=4000)
    payment_method_id: str | None = Field(default=None, max_length=255,
                                          description="a saved card (pm_...); needed when payments are on")


class MoveBody(Body):
    reason: str = Field(default="", max_length=2000)
    hours: Any = Field(default=None, description="complete only: the hours worked, a multiple of 0.25 "
                                                  "(fewer than booked, or up to the extra-hours limit more)")
    charge_late_fee: bool = Field(default=False, description="cancel by staff only: charge the client the "
                                                             "late-cancellation fee")


def _parse_start(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid("must be an ISO 8601 date-time with an offset", field="start") from None


def quote_json(quote: Quote) -> dict[str, Any]:
    """The lines a client sees before booking (the same ones a booking shows them)."""
    currency = quote.currency
    return {"hours": float(quote.hours), "hourly_rate": money(quote.hourly_rate_minor, currency),
            "subtotal": money(quote.subtotal_minor, currency), "tax": money(quote.tax_minor, currency),
            "total": money(quote.amount_minor, currency)}


def price_json(booking: Booking, party: Party) -> dict[str, Any]:
    """The price lines (the final ones once completed, which may differ from the quote when the
    cleaner completed with other hours); what the platform keeps and the cleaner takes home are
    not the client's."""
    c = booking.currency
    lines: dict[str, Any] = {
        "hourly_rate": money(booking.hourly_rate_minor, c), "subtotal": money(booking.subtotal_minor, c),
        "tax": money(booking.tax_minor, c), "total": money(booking.amount_minor, c),
        "quoted": {"hours": float(booking.quoted_hours), "subtotal": money(booking.quoted_subtotal_minor, c),
                   "tax": money(booking.quoted_tax_minor, c), "total": money(booking.quoted_amount_minor, c)},
        "final": {"hours": float(booking.hours), "subtotal": money(booking.subtotal_minor, c),
                  "tax": money(booking.tax_minor, c), "total": money(booking.amount_minor, c)}
        if booking.completed_at is not None else None}
    if party != Party.CLIENT:
        lines["platform_fee"] = money(booking.platform_fee_minor, c)
        lines["cleaner_payout"] = money(booking.subtotal_minor - booking.platform_fee_minor, c)
    return lines


def booking_json(booking: Booking, party: Party, timeline: list[BookingTransition] | None = None) -> dict[str, Any]:
    """A booking as `party` sees it; the cleaner gets directions to the door."""
    c = booking.currency
    when = {name: (value.isoformat() if value else None) for name, value in [
        ("accepted_at", booking.accepted_at), ("declined_at", booking.declined_at),
        ("expired_at", booking.expired_at), ("on_the_way_at", booking.on_the_way_at),
        ("started_at", booking.started_at), ("completed_at", booking.completed_at),
        ("cancelled_at", booking.cancelled_at), ("disputed_at", booking.disputed_at)]}
    body: dict[str, Any] = {
        "id": str(booking.id), "state": booking.state, "client_id": str(booking.client_id),
        "cleaner_id": str(booking.cleaner_id), "service": booking.service_id,
        "start": booking.starts_at.isoformat(), "end": booking.ends_at.isoformat(), "hours": float(booking.hours),
        "price": price_json(booking, party),
        "address": booking.address, "city": booking.city, "location": ({"lat": booking.lat, "lng": booking.lng}
                                                 if booking.lat is not None else None),
        "notes": booking.notes, "created_at": booking.created_at.isoformat(), **when,
        "payment": {"status": booking.payment_status, "captured": money(booking.captured_minor, c),
                    "refunded": money(booking.refunded_minor, c), "held": money(booking.held_minor, c),
                    "shortfall": money(booking.capture_shortfall_minor, c)},
        "cancellation": {"by": booking.cancelled_by, "reason": booking.cancel_reason,
                         "late": booking.late_cancellation, "fee": money(booking.cancellation_fee_minor, c)}
        if booking.state == "cancelled" else None,
    }
    if party in (Party.CLEANER, Party.ADMIN):
        body["navigation"] = navigation_links(lat=booking.lat, lng=booking.lng, address=booking.address)
    if timeline is not None:
        body["timeline"] = [{"from": t.from_state, "to": t.to_state, "by": t.party, "reason": t.reason,
                             "at": t.created_at.isoformat()} for t in timeline]
    return body


@bp.post("/quote")
@openapi.definition(summary="What a booking would cost, with the breakdown", body=openapi_body(QuoteBody),
                    tag="bookings")
@openapi.response(200, json_response(QuoteAnswer), "the price")
@authenticated(Role.CLIENT)
async def quote(request: Request) -> HTTPResponse:
    settings = settings_of(request)
    body = parse_body(request, QuoteBody)
    priced = await bookings.quote_booking(
        actor=current_session(request).user, cleaner_id=parse_uuid(body.cleaner_id, field="cleaner_id"),
        service=body.service, hours=parse_hours(body.hours, max_hours=settings.booking_max_hours),
        settings=settings)
    return json({"quote": quote_json(priced)})


@bp.post("")
@openapi.definition(summary="Request a cleaner for a time; 409 slot_taken when they are not free",
                    body=openapi_body(BookingBody), tag="bookings")
@openapi.response(201, json_response(BookingAnswer), "requested")
@authenticated(Role.CLIENT)
async def create(request: Request) -> HTTPResponse:
    settings = settings_of(request)
    body = parse_body(request, BookingBody)
    made = await bookings.create_booking(actor=current_session(request).user, settings=settings,
                                         request=bookings.BookingRequest(
        cleaner_id=parse_uuid(body.cleaner_id, field="cleaner_id"), service=body.service,
        start=_parse_start(body.start), hours=parse_hours(body.hours, max_hours=settings.booking_max_hours),
        address=body.address, city=body.city, lat=body.lat, lng=body.lng, notes=body.notes,
        payment_method_id=body.payment_method_id))
    return json({"booking": booking_json(made, Party.CLIENT)}, status=201)


@bp.get("")
@openapi.definition(summary="Your bookings, latest start first (?state=, ?cursor=, ?limit=)", tag="bookings")
@openapi.response(200, json_response(BookingPage), "one page of bookings")
@openapi.parameter("state", RawSchema({"type": "string", "enum": list(BookingState)}), "query",
                   description="only bookings in this state; omitted or empty: all")
@paged
@authenticated()
async def list_mine(request: Request) -> HTTPResponse:
    user = current_session(request).user
    rows, next_cursor = await bookings.list_bookings(
        actor=user, state=request.args.get("state") or None, cursor=request.args.get("cursor"),
        limit=parse_limit(request.args.get("limit")))
    party = {Role.CLIENT: Party.CLIENT, Role.CLEANER: Party.CLEANER}.get(Role(user.role), Party.ADMIN)
    return json({"data": [booking_json(b, party) for b in rows], "next_cursor": next_cursor})


@bp.get("/<booking_id:str>")
@openapi.definition(summary="One booking with its timeline; 404 unless you are a party to it", tag="bookings")
@openapi.response(200, json_response(BookingAnswer), "the booking with its timeline")
@authenticated()
async def read(request: Request, booking_id: str) -> HTTPResponse:
    booking, party = await bookings.get_booking(actor=current_session(request).user,
                                                booking_id=parse_uuid(booking_id))
    return json({"booking": booking_json(booking, party, await bookings.transitions_of(booking))})


Mover = Callable[[UUID, User, MoveBody, Settings], Awaitable[Booking]]
MOVES: dict[str, Mover] = {
    "accept": lambda i, u, b, s: bookings.accept_booking(i, actor=u, settings=s),
    "decline": lambda i, u, b, s: bookings.decline_booking(i, actor=u, settings=s, reason=b.reason),
    "cancel": lambda i, u, b, s: bookings.cancel_booking(i, actor=u, settings=s, reason=b.reason,
                                                         charge_late_fee=b.charge_late_fee),
    "on-the-way": lambda i, u, b, s: bookings.mark_on_the_way(i, actor=u, settings=s),
    "start": lambda i, u, b, s: bookings.start_booking(i, actor=u, settings=s),
    "complete": lambda i, u, b, s: bookings.complete_booking(i, actor=u, settings=s, hours=b.hours),
    "dispute": lambda i, u, b, s: bookings.dispute_booking(i, actor=u, settings=s, reason=b.reason),
}


@bp.post("/<booking_id:str>/<move:str>")
@openapi.definition(summary="Move a booking on: accept, decline, cancel, on-the-way, start, complete, "
                            "dispute (cancel and dispute need a reason; complete may say the hours worked, "
                            "422 over_extra_hours above the limit; staff may cancel with charge_late_fee)",
                    description="An illegal move is 409 illegal_transition; a move that is not the "
                                "caller's to make is 403 not_your_move. "
                                "The cleaner may mark on-the-way, and start, no earlier than "
                                "SPOTLESS_BOOKING_ON_THE_WAY_LEAD_S (default 3 hours) before the booking's "
                                "start: earlier is 409 too_early, whose allowed_from member (and detail) says from when (UTC).",
                    body=openapi_body(MoveBody),
                    tag="bookings")
@openapi.response(200, json_response(BookingAnswer), "the booking, moved")
@authenticated()
async def move(request: Request, booking_id: str, move: str) -> HTTPResponse:
    if move not in MOVES:
        raise NotFound(f"bookings have no '{move}' action")
    user = current_session(request).user
    body = parse_body(request, MoveBody) if request.body else MoveBody()
    if body.hours is not None and move != "complete":
        raise Invalid("is sent only when completing", field="hours")
    if body.charge_late_fee and move != "cancel":
        raise Invalid("is sent only when cancelling", field="charge_late_fee")
    moved = await MOVES[move](parse_uuid(booking_id), user, body, settings_of(request))
    _, party = await bookings.get_booking(actor=user, booking_id=moved.id)
    return json({"booking": booking_json(moved, party)})
