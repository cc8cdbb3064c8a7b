"""Booking actions: quote, create, the transitions, listing, and the scheduled work on bookings.

Every write validates with core.bookings, then writes in one transaction: the booking row with
the time of its transition, a `booking_transitions` row, an audit row and an outbox event.
Anything that books a cleaner's time first takes that cleaner's advisory lock (the SQL function
`booking_cleaner_lock`, which the overlap trigger takes too), so two requests for one cleaner
are checked one after the other; the trigger is the last line should anything bypass this.
Stripe is called by storage/payments.py after the booking's transaction commits, never inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from core.accounts import Role
from core.availability import is_free
from core.bookings import (
    Action,
    BookingError,
    BookingState,
    Party,
    Place,
    Quote,
    cancellation_outcome,
    check_final_hours,
    check_notes,
    check_place,
    check_reason,
    check_start,
    check_text,
    check_transition,
    party_of,
    quote_price,
)
from core.clock import utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.events import EventType
from core.geometry import area_covers
from core.ids import new_id
from core.pagination import decode_cursor, encode_cursor
from core.payments import PaymentStatus
from core.settings import Settings
from storage import audit, evidence, outbox, payments
from storage.availability import load_calendars
from storage.models import (
    Booking,
    BookingTransition,
    CleanerProfile,
    CleanerService,
    ServiceArea,
    ServiceType,
    User,
)

EVENT_OF: dict[Action | None, EventType] = {
    None: EventType.BOOKING_REQUESTED,
    Action.ACCEPT: EventType.BOOKING_ACCEPTED,
    Action.DECLINE: EventType.BOOKING_DECLINED,
    Action.EXPIRE: EventType.BOOKING_EXPIRED,
    Action.CANCEL: EventType.BOOKING_CANCELLED,
    Action.ON_THE_WAY: EventType.BOOKING_ON_THE_WAY,
    Action.START: EventType.BOOKING_STARTED,
    Action.COMPLETE: EventType.BOOKING_COMPLETED,
    Action.DISPUTE: EventType.BOOKING_DISPUTED,
}


@dataclass(frozen=True)
class BookingRequest:
    """What a client asks for; `hours` is already parsed (core.bookings.parse_hours)."""

    cleaner_id: UUID
    service: str
    start: datetime
    hours: Decimal
    address: str
    lat: float | None
    lng: float | None
    notes: str = ""
    payment_method_id: str | None = None  # a saved card (pm_...); required when payments are on
    city: str | None = None  # from the app's geocoder; read off the address when absent


def _slot_taken() -> Conflict:
    return Conflict("the cleaner is not free for that time", code=BookingError.SLOT_TAKEN)


def _require_client(actor: User) -> None:
    if actor.role != Role.CLIENT:
        raise Forbidden("only client accounts book cleaners")


async def _bookable(cleaner_id: UUID, service: str) -> tuple[CleanerProfile, ServiceType, int]:
    """The approved cleaner's profile, the active service and the cleaner's rate for it."""
    check_text(service, field="service")
    cleaner = await User.get_or_none(id=cleaner_id, role=Role.CLEANER, suspended_at=None)
    profile = await CleanerProfile.get_or_none(user_id=cleaner_id) if cleaner else None
    if profile is None or profile.verification_status != "approved":
        raise Invalid("no bookable cleaner with this id", field="cleaner_id", code=BookingError.CLEANER_NOT_BOOKABLE)
    kind = await ServiceType.get_or_none(id=service, active=True)
    offer = await CleanerService.get_or_none(cleaner_id=cleaner_id, service_id=service) if kind else None
    if kind is None or offer is None:
        raise Invalid("this cleaner does not offer this service", field="service",
                      code=BookingError.SERVICE_NOT_OFFERED)
    return profile, kind, offer.hourly_rate_minor


async def _check_served(cleaner_id: UUID, place: Place) -> None:
    """The address must lie in the cleaner's service area (search offers only such cleaners;
    a booking made by id is held to the same rule), so its coordinates are required."""
    if place.lat is None or place.lng is None:
        raise Invalid("send the address's coordinates (lat and lng): they tell whether the cleaner "
                      "serves it", field="lat")
    area = await ServiceArea.get_or_none(cleaner_id=cleaner_id)
    if area is None or not area_covers(area.geojson, lat=place.lat, lng=place.lng):
        raise Invalid("this cleaner does not serve this address (it is outside their service area)",
                      field="lat", code=BookingError.OUTSIDE_SERVICE_AREA)


def _quote(kind: ServiceType, rate_minor: int, hours: Decimal, settings: Settings) -> Quote:
    return quote_price(hourly_rate_minor=rate_minor, hours=hours, min_duration_minutes=kind.min_duration_minutes,
                       take_rate_bp=settings.booking_take_rate_bp, tax_rate_bp=settings.booking_tax_rate_bp,
                       currency=kind.currency.strip() or settings.payments_currency)


async def quote_booking(*, actor: User, cleaner_id: UUID, service: str, hours: Decimal, settings: Settings) -> Quote:
    """What the client would pay for `hours` of this cleaner's `service`; nothing is written."""
    _require_client(actor)
    _, kind, rate = await _bookable(cleaner_id, service)
    return _quote(kind, rate, hours, settings)


async def _is_free(tx: BaseDBAsyncClient, profile: CleanerProfile, start: datetime, end: datetime,
                   *, ignore: UUID | None = None) -> bool:
    """The cleaner's schedule, exceptions and time-holding bookings around the window, read in
    `tx` after the cleaner's lock is held, so no booking can slip in between check and write."""
    calendar = (await load_calendars(tx, [profile.user_id], start, end, ignore_booking=ignore))[
        str(profile.user_id)]
    return is_free(calendar.rules, calendar.exceptions, calendar.busy, time_zone=profile.time_zone,
                   travel_buffer_minutes=profile.travel_buffer_minutes, start=start, end=end)


async def _lock_cleaner(tx: BaseDBAsyncClient, cleaner_id: UUID) -> None:
    await tx.execute_query("SELECT booking_cleaner_lock($1)", [cleaner_id])


def _event_payload(booking: Booking, party: Party, **extra: Any) -> dict[str, Any]:
    return {"booking_id": str(booking.id), "state": booking.state, "client_id": str(booking.client_id),
            "cleaner_id": str(booking.cleaner_id), "starts_at": booking.starts_at.isoformat(),
            "by": str(party), **{k: v for k, v in extra.items() if v is not None}}


async def _record(tx: BaseDBAsyncClient, booking: Booking, *, action: Action | None, before: str | None,
                  party: Party, actor_id: UUID | None, reason: str | None = None, **extra: Any) -> None:
    """The timeline row, the audit row and the outbox event of one transition."""
    await BookingTransition.create(booking_id=booking.id, from_state=before, to_state=booking.state, party=str(party),
                                   actor_id=actor_id, reason=reason or None, using_db=tx)
    await audit.record(actor_id=actor_id, action=f"booking.{action or 'requested'}", entity_type="booking",
                       entity_id=booking.id, before={"state": before} if before else None,
                       after={"state": booking.state, "by": str(party), **({"reason": reason} if reason else {}),
                              **{k: v for k, v in extra.items() if v is not None}},
                       using=tx)
    await outbox.enqueue(EVENT_OF[action], _event_payload(booking, party, reason=reason or None, **extra), using=tx)


def check_bookable_start(start: datetime, *, settings: Settings) -> datetime:
    """A start a booking made now may have; the search applies it too, so it offers no window
    that booking would then refuse, with the same message and code."""
    return check_start(start, now=utcnow(), min_lead=timedelta(seconds=settings.booking_min_lead_s),
                       max_advance=timedelta(days=settings.booking_max_advance_days))


async def create_booking(*, actor: User, request: BookingRequest, settings: Settings) -> Booking:
    """Request a cleaner's time: validated, priced, checked free under the cleaner's lock."""
    _require_client(actor)
    start = check_bookable_start(request.start, settings=settings)
    place = check_place(address=request.address, lat=request.lat, lng=request.lng, city=request.city)
    notes = check_notes(request.notes)
    profile, kind, rate = await _bookable(request.cleaner_id, request.service)
    await _check_served(request.cleaner_id, place)
    quote = _quote(kind, rate, request.hours, settings)
    end = start + timedelta(minutes=int(request.hours * 60))
    booking_id, intent_id = new_id(), None
    if payments.enabled(settings):
        if not request.payment_method_id:
            raise Invalid("choose a saved card", field="payment_method_id")
        async with in_transaction() as peek:  # no card is held for a slot that is visibly taken
            if not await _is_free(peek, profile, start, end):
                raise _slot_taken()
        intent_id = await payments.authorize(booking_id=booking_id, client=actor, cleaner_id=request.cleaner_id,
                                             quote=quote, payment_method_id=request.payment_method_id,
                                             settings=settings)
    try:
        async with in_transaction() as tx:
            await _lock_cleaner(tx, request.cleaner_id)
            if not await _is_free(tx, profile, start, end):
                raise _slot_taken()
            booking = await Booking.create(
                id=booking_id, client_id=actor.id, cleaner_id=request.cleaner_id, service_id=kind.id,
                state=BookingState.REQUESTED, starts_at=start, ends_at=end, hours=quote.hours,
                hourly_rate_minor=rate, subtotal_minor=quote.subtotal_minor,
                platform_fee_minor=quote.platform_fee_minor, tax_minor=quote.tax_minor,
                amount_minor=quote.amount_minor, currency=quote.currency, quoted_hours=quote.hours,
                quoted_subtotal_minor=quote.subtotal_minor, quoted_tax_minor=quote.tax_minor,
                quoted_amount_minor=quote.amount_minor, held_minor=quote.amount_minor if intent_id else 0,
                travel_buffer_minutes=profile.travel_buffer_minutes, address=place.address, city=place.city, lat=place.lat,
                lng=place.lng, notes=notes, payment_intent_id=intent_id,
                payment_status=PaymentStatus.AUTHORIZED if intent_id else PaymentStatus.NONE, using_db=tx)
            await _record(tx, booking, action=None, before=None, party=Party.CLIENT, actor_id=actor.id)
    except BaseException as exc:
        if intent_id is not None:
            await payments.release(intent_id, booking_id=booking_id, settings=settings)
        if isinstance(exc, asyncpg.ExclusionViolationError) or (
                isinstance(exc, IntegrityError) and "bookings_no_overlap" in str(exc)):
            raise _slot_taken() from None
        raise
    return booking


async def _visible(booking_id: UUID, actor: User, *, using: BaseDBAsyncClient | None = None,
                   lock: bool = False) -> tuple[Booking, Party]:
    """The booking and the actor's part in it; NotFound for strangers, so ids cannot be probed."""
    query = Booking.filter(id=booking_id)
    if using is not None:
        query = query.using_db(using)
    if lock:
        query = query.select_for_update()
    booking = await query.first()
    party = None if booking is None else party_of(
        user_id=str(actor.id), role=actor.role, client_id=str(booking.client_id), cleaner_id=str(booking.cleaner_id))
    if booking is None or party is None:
        raise NotFound("no such booking")
    return booking, party


async def get_booking(*, actor: User, booking_id: UUID) -> tuple[Booking, Party]:
    return await _visible(booking_id, actor)


async def transitions_of(booking: Booking) -> list[BookingTransition]:
    return await BookingTransition.filter(booking_id=booking.id).order_by("id")


async def list_bookings(*, actor: User, state: str | None, cursor: str | None,
                        limit: int) -> tuple[list[Booking], str | None]:
    """The actor's bookings (staff: everyone's), latest start first, a page at a time."""
    if state is not None and state not in set(BookingState):
        raise Invalid(f"must be one of: {', '.join(BookingState)}", field="state")
    query = Booking.all()
    if actor.role == Role.CLIENT:
        query = query.filter(client_id=actor.id)
    elif actor.role == Role.CLEANER:
        query = query.filter(cleaner_id=actor.id)
    if state is not None:
        query = query.filter(state=state)
    after = decode_cursor(cursor)
    if after is not None:
        try:
            starts_at, last_id = datetime.fromisoformat(after[0]), UUID(after[1])
        except (TypeError, ValueError, IndexError, KeyError):
            raise Invalid("cursor is not one this API issued", field="cursor") from None
        query = query.filter(Q(starts_at__lt=starts_at) | Q(starts_at=starts_at, id__lt=last_id))
    rows = await query.order_by("-starts_at", "-id").limit(limit + 1)
    last = rows[limit - 1] if len(rows) > limit else None
    return rows[:limit], encode_cursor([last.starts_at.isoformat(), str(last.id)]) if last else None


Change = Callable[[Booking, Party, datetime], dict[str, Any]]


async def _move(booking_id: UUID, action: Action, *, actor: User | None, settings: Settings,
                reason: str | None = None, change: Change | None = None,
                guard: Callable[[Booking], Any] | None = None) -> Booking:
    """Apply one transition in one transaction. `actor=None` is the platform (Party.SYSTEM)."""
    now = utcnow()
    async with in_transaction() as tx:
        if actor is None:
            booking = await Booking.filter(id=booking_id).using_db(tx).select_for_update().first()
            if booking is None:
                raise NotFound("no such booking")
            party = Party.SYSTEM
        else:
            booking, party = await _visible(booking_id, actor, using=tx, lock=True)
        transition = check_transition(action, state=booking.state, party=party, now=now,
                                      completed_at=booking.completed_at,
                                      dispute_window=timedelta(seconds=settings.booking_dispute_window_s),
                                      starts_at=booking.starts_at,
                                      on_the_way_lead=timedelta(seconds=settings.booking_on_the_way_lead_s))
        if guard is not None:
            await guard(booking)
        if action == Action.ACCEPT:
            await _lock_cleaner(tx, booking.cleaner_id)
        before = booking.state
        fields = {"state": str(transition.target), transition.stamp: now,
                  **(change(booking, party, now) if change else {})}
        booking.update_from_dict(fields)
        await booking.save(update_fields=[*fields, "updated_at"], using_db=tx)
        extra: dict[str, Any] = {}
        if action == Action.CANCEL:
            extra = {"cancellation_fee_minor": booking.cancellation_fee_minor}
        elif action == Action.COMPLETE:  # the client learns the final price here, and may dispute it
            extra = {"hours": str(booking.hours), "amount_minor": booking.amount_minor,
                     "quoted_hours": str(booking.quoted_hours), "quoted_amount_minor": booking.quoted_amount_minor}
        await _record(tx, booking, action=action, before=before, party=party,
                      actor_id=actor.id if actor else None, reason=reason, **extra)
    return await payments.settle(booking, settings=settings)


# --- the transitions, one verb each ---


async def accept_booking(booking_id: UUID, *, actor: User, settings: Settings) -> Booking:
    """The cleaner takes the request; a paid one only once their payout account takes charges."""
    return await _move(booking_id, Action.ACCEPT, actor=actor, settings=settings, guard=payments.require_payable)


async def decline_booking(booking_id: UUID, *, actor: User, settings: Settings, reason: str = "") -> Booking:
    kept = check_reason(reason, required=False) or None
    return await _move(booking_id, Action.DECLINE, actor=actor, settings=settings, reason=kept,
                       change=lambda b, p, now: {"decline_reason": kept})


async def cancel_booking(booking_id: UUID, *, actor: User, reason: str, settings: Settings,
                         charge_late_fee: bool = False) -> Booking:
    """Either party (or staff) calls it off before the work starts; late costs (core.bookings).
    Staff may `charge_late_fee`: the client then pays what a late cancellation of theirs would."""
    kept = check_reason(reason, required=True)

    def change(booking: Booking, party: Party, now: datetime) -> dict[str, Any]:
        outcome = cancellation_outcome(
            party=party, state=booking.state, starts_at=booking.starts_at, now=now,
            amount_minor=booking.amount_minor, free_before=timedelta(seconds=settings.booking_free_cancellation_s),
            late_fee_bp=settings.booking_late_cancellation_fee_bp, charge_late_fee=charge_late_fee)
        return {"cancelled_by": str(party), "cancel_reason": kept, "cancellation_fee_minor": outcome.fee_minor,
                "late_cancellation": outcome.late, "counts_against_cleaner": outcome.counts_against_cleaner}

    return await _move(booking_id, Action.CANCEL, actor=actor, settings=settings, reason=kept, change=change)


async def mark_on_the_way(booking_id: UUID, *, actor: User, settings: Settings) -> Booking:
    """The cleaner sets off: from `booking_on_the_way_lead_s` before the start (409 too_early before)."""
    return await _move(booking_id, Action.ON_THE_WAY, actor=actor, settings=settings)


async def start_booking(booking_id: UUID, *, actor: User, settings: Settings) -> Booking:
    """The cleaner starts work: early arrivals may, but not before `booking_on_the_way_lead_s` before the start."""
    return await _move(booking_id, Action.START, actor=actor, settings=settings)


async def complete_booking(booking_id: UUID, *, actor: User, settings: Settings, hours: object = None) -> Booking:
    """The cleaner finishes; a service that asks for photo evidence needs one (storage.evidence).

    With `hours` (the time actually worked: fewer than booked, or at most
    `booking_max_extra_hours` more) the booking is re-quoted at its booked rate, and the new
    total is what payments.settle captures; the quote stays in the `quoted_*` columns."""
    final: list[Quote] = []

    async def guard(booking: Booking) -> None:
        await evidence.require_evidence(booking)
        if hours is None:
            return
        worked = check_final_hours(hours, quoted_hours=booking.quoted_hours,
                                   max_extra_hours=settings.booking_max_extra_hours)
        kind = await ServiceType.get(id=booking.service_id)
        quote = quote_price(hourly_rate_minor=booking.hourly_rate_minor, hours=worked,
                            min_duration_minutes=kind.min_duration_minutes, take_rate_bp=settings.booking_take_rate_bp,
                            tax_rate_bp=settings.booking_tax_rate_bp, currency=booking.currency)
        final.append(quote)

    def change(booking: Booking, party: Party, now: datetime) -> dict[str, Any]:
        if not final or final[0].hours == booking.hours:
            return {}
        quote = final[0]
        return {"hours": quote.hours, "subtotal_minor": quote.subtotal_minor,
                "platform_fee_minor": quote.platform_fee_minor, "tax_minor": quote.tax_minor,
                "amount_minor": quote.amount_minor}

    return await _move(booking_id, Action.COMPLETE, actor=actor, settings=settings, guard=guard, change=change)


async def dispute_booking(booking_id: UUID, *, actor: User, reason: str, settings: Settings) -> Booking:
    kept = check_reason(reason, required=True)
    return await _move(booking_id, Action.DISPUTE, actor=actor, settings=settings, reason=kept,
                       change=lambda b, p, now: {"dispute_reason": kept})


# --- scheduled work (jobs/scheduler.py runs these periodically) ---


async def expire_unanswered(*, settings: Settings, now: datetime | None = None) -> list[UUID]:
    """Expire requests unanswered for `booking_request_ttl_s`, or whose start has come."""
    now = now or utcnow()
    stale = await Booking.filter(state=BookingState.REQUESTED).filter(
        Q(created_at__lte=now - timedelta(seconds=settings.booking_request_ttl_s)) | Q(starts_at__lte=now)
    ).order_by("created_at").values_list("id", flat=True)
    expired: list[UUID] = []
    for booking_id in stale:
        try:
            await _move(booking_id, Action.EXPIRE, actor=None, settings=settings)  # type: ignore[arg-type]
        except Conflict:
            continue  # answered in the meantime
        expired.append(booking_id)  # type: ignore[arg-type]
    return expired


async def reminders_due(*, settings: Settings, now: datetime | None = None) -> list[UUID]:
    """Queue the reminders of accepted bookings: `booking_reminder_lead_s` and
    `booking_final_reminder_lead_s` before the start, each once per booking (a unique
    `booking_reminders` row per booking and lead). A booking already inside the nearer window
    gets only the nearer reminder; one cancelled in the meantime is no longer accepted."""
    now = now or utcnow()
    leads = sorted({settings.booking_reminder_lead_s, settings.booking_final_reminder_lead_s} - {0})
    sent: list[UUID] = []
    async with in_transaction() as tx:
        for lead_s in leads:  # nearest first, so a booking inside both windows takes the nearer one
            rows = await tx.execute_query_dict(
                """SELECT b.id FROM bookings b
                   WHERE b.state = $1 AND b.starts_at > $2 AND b.starts_at <= $3
                     AND NOT EXISTS (SELECT 1 FROM booking_reminders r
                                     WHERE r.booking_id = b.id AND r.lead_s <= $4)
                   ORDER BY b.starts_at FOR UPDATE OF b SKIP LOCKED""",
                [str(BookingState.ACCEPTED), now, now + timedelta(seconds=lead_s), lead_s])
            for booking in await Booking.filter(id__in=[r["id"] for r in rows]).using_db(tx).order_by("starts_at"):
                if not await tx.execute_query_dict(
                        """INSERT INTO booking_reminders (booking_id, lead_s, queued_at) VALUES ($1, $2, $3)
                           ON CONFLICT (booking_id, lead_s) DO NOTHING RETURNING id""",
                        [booking.id, lead_s, now]):
                    continue  # queued by a concurrent run
                booking.reminder_sent_at = now
                await booking.save(update_fields=["reminder_sent_at"], using_db=tx)
                await outbox.enqueue(EventType.BOOKING_REMINDER_DUE,
                                     _event_payload(booking, Party.SYSTEM, reminder_lead_s=lead_s), using=tx)
                sent.append(booking.id)
    return sent
