"""Booking rules: the state machine, who may make each transition and when, prices and cancellation fees.

Pure, no I/O. storage/bookings.py applies these inside its transactions; the edge, the admin and
the jobs call storage, never a copy of a rule here. Money is integer minor units throughout, and
rates are basis points (1 bp = 0.01 %), so no float ever touches a price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from urllib.parse import quote

from core.accounts import Role
from core.errors import Conflict, Forbidden, Invalid

BASIS_POINTS = 10_000


class BookingState(StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    ON_THE_WAY = "on_the_way"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DISPUTED = "disputed"


# States in which the cleaner's time is taken. The overlap trigger in
# storage/migrations/0007_bookings.sql spells the same list in SQL.
TIME_HOLDING_STATES = (BookingState.REQUESTED, BookingState.ACCEPTED, BookingState.ON_THE_WAY,
                       BookingState.IN_PROGRESS)


class Party(StrEnum):
    """Who acts on a booking: its two parties, staff, or the platform's scheduled work."""

    CLIENT = "client"
    CLEANER = "cleaner"
    ADMIN = "admin"
    SYSTEM = "system"


class Action(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    EXPIRE = "expire"
    CANCEL = "cancel"
    ON_THE_WAY = "on_the_way"
    START = "start"
    COMPLETE = "complete"
    DISPUTE = "dispute"


class BookingError(StrEnum):
    SLOT_TAKEN = "slot_taken"
    ILLEGAL_TRANSITION = "illegal_transition"
    NOT_YOUR_MOVE = "not_your_move"
    CLEANER_NOT_BOOKABLE = "cleaner_not_bookable"
    SERVICE_NOT_OFFERED = "service_not_offered"
    OUTSIDE_SERVICE_AREA = "outside_service_area"
    BELOW_MINIMUM_DURATION = "below_minimum_duration"
    DISPUTE_WINDOW_CLOSED = "dispute_window_closed"
    TOO_LATE = "too_late"
    TOO_EARLY = "too_early"
    OVER_EXTRA_HOURS = "over_extra_hours"
    NO_FEE_DUE = "no_fee_due"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[BookingState]
    target: BookingState
    parties: frozenset[Party]
    stamp: str  # the booking column that records when this transition happened


def _t(sources: set[BookingState], target: BookingState, parties: set[Party], stamp: str) -> Transition:
    return Transition(frozenset(sources), target, frozenset(parties), stamp)


S, P = BookingState, Party
TRANSITIONS: dict[Action, Transition] = {
    Action.ACCEPT: _t({S.REQUESTED}, S.ACCEPTED, {P.CLEANER}, "accepted_at"),
    Action.DECLINE: _t({S.REQUESTED}, S.DECLINED, {P.CLEANER, P.ADMIN}, "declined_at"),
    Action.EXPIRE: _t({S.REQUESTED}, S.EXPIRED, {P.SYSTEM}, "expired_at"),
    Action.CANCEL: _t({S.REQUESTED, S.ACCEPTED, S.ON_THE_WAY}, S.CANCELLED,
                      {P.CLIENT, P.CLEANER, P.ADMIN}, "cancelled_at"),
    Action.ON_THE_WAY: _t({S.ACCEPTED}, S.ON_THE_WAY, {P.CLEANER}, "on_the_way_at"),
    Action.START: _t({S.ON_THE_WAY}, S.IN_PROGRESS, {P.CLEANER}, "started_at"),
    Action.COMPLETE: _t({S.IN_PROGRESS}, S.COMPLETED, {P.CLEANER, P.ADMIN}, "completed_at"),
    Action.DISPUTE: _t({S.COMPLETED}, S.DISPUTED, {P.CLIENT, P.CLEANER, P.ADMIN}, "disputed_at"),
}
del S, P


def party_of(*, user_id: str, role: str, client_id: str, cleaner_id: str) -> Party | None:
    """The part a user plays in a booking; None for a stranger (who must not learn it exists)."""
    if user_id == client_id:
        return Party.CLIENT
    if user_id == cleaner_id:
        return Party.CLEANER
    if role == Role.ADMIN:
        return Party.ADMIN
    return None


# The moves a cleaner makes on the day: not before `on_the_way_lead` before the start, so nobody
# completes (which captures the payment and opens the dispute window) days ahead of the job.
ON_THE_DAY = {Action.ON_THE_WAY: "set off for", Action.START: "start"}


def check_transition(
    action: Action, *, state: str, party: Party, now: datetime | None = None,
    completed_at: datetime | None = None, dispute_window: timedelta | None = None,
    starts_at: datetime | None = None, on_the_way_lead: timedelta | None = None,
) -> Transition:
    """The transition `party` makes by `action` from `state`; raise Forbidden or Conflict if not.

    The one place that decides whether a booking may move. A dispute also needs `now`,
    `completed_at` and `dispute_window`: it is open only that long after completion. Setting off
    and starting also need `now`, `starts_at` and `on_the_way_lead`: they are allowed from that
    long before the start (Conflict too_early before), so completing, which needs a start, follows."""
    transition = TRANSITIONS[action]
    if party not in transition.parties:
        deed = "mark a booking on the way" if action == Action.ON_THE_WAY else f"{action} a booking"
        raise Forbidden(f"the {party} may not {deed}",
                        code=BookingError.NOT_YOUR_MOVE)
    if state not in transition.sources:
        raise Conflict(f"this booking is {state.replace('_', ' ')}: it cannot be moved by '{action}'",
                       code=BookingError.ILLEGAL_TRANSITION)
    if action == Action.DISPUTE:
        if now is None or completed_at is None or dispute_window is None:
            raise ValueError("a dispute needs now, completed_at and dispute_window")
        if now > completed_at + dispute_window:
            raise Conflict("the window for disputing this booking has closed",
                           code=BookingError.DISPUTE_WINDOW_CLOSED)
    if action in ON_THE_DAY:
        if now is None or starts_at is None or on_the_way_lead is None:
            raise ValueError(f"'{action}' needs now, starts_at and on_the_way_lead")
        allowed_from = starts_at - on_the_way_lead
        if now < allowed_from:
            raise Conflict(f"too early: a cleaner may {ON_THE_DAY[action]} this booking from "
                           f"{iso_utc(allowed_from)}, {duration_words(on_the_way_lead)} before its start",
                           code=BookingError.TOO_EARLY, members={"allowed_from": iso_utc(allowed_from)})
    return transition


def iso_utc(moment: datetime) -> str:
    """`moment` in UTC as ISO 8601 to the second, e.g. 2026-12-05T07:00:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_words(span: timedelta) -> str:
    """A whole span in the largest unit that divides it: "3 hours", "90 minutes", "1 second"."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


# --- pricing ---


def parse_hours(raw: object, *, max_hours: int) -> Decimal:
    """Booked hours: a multiple of a quarter hour, more than zero and at most `max_hours`."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str | Decimal):
        raise Invalid("must be a number of hours", field="hours")
    try:
        hours = Decimal(str(raw))
    except InvalidOperation:
        raise Invalid("must be a number of hours", field="hours") from None
    if not hours.is_finite() or hours <= 0 or hours > max_hours or (hours * 4) % 1 != 0:
        raise Invalid(f"must be a multiple of 0.25 between 0.25 and {max_hours}", field="hours")
    return hours


def check_final_hours(raw: object, *, quoted_hours: Decimal, max_extra_hours: int) -> Decimal:
    """The hours a cleaner completes with: fewer than quoted, or up to `max_extra_hours` more.

    The client is told the new price in the completion event and can dispute it within the
    dispute window; more than the limit is refused outright (422 over_extra_hours)."""
    hours = parse_hours(raw, max_hours=10_000)
    limit = quoted_hours + max_extra_hours
    if hours > limit:
        raise Invalid(f"must be at most {limit.normalize():f}: {max_extra_hours} hours over the "
                      f"{quoted_hours.normalize():f} booked", field="hours", code=BookingError.OVER_EXTRA_HOURS)
    return hours


def _share(amount_minor: int, rate_bp: int) -> int:
    """`rate_bp` of an amount, rounded half up to the minor unit."""
    exact = Decimal(amount_minor) * Decimal(rate_bp) / BASIS_POINTS
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class Quote:
    """What a booking costs. The client pays `amount_minor`; the platform keeps
    `application_fee_minor` (its take plus the tax it remits); the cleaner gets the rest."""

    hours: Decimal
    hourly_rate_minor: int
    subtotal_minor: int
    platform_fee_minor: int
    tax_minor: int
    amount_minor: int
    currency: str

    @property
    def application_fee_minor(self) -> int:
        return self.platform_fee_minor + self.tax_minor

    @property
    def cleaner_payout_minor(self) -> int:
        return self.amount_minor - self.application_fee_minor


def quote_price(
    *, hourly_rate_minor: int, hours: Decimal, min_duration_minutes: int, take_rate_bp: int,
    tax_rate_bp: int, currency: str,
) -> Quote:
    """Rate × hours, refused below the service's minimum; tax is added on top of the subtotal,
    the platform's take comes out of the subtotal."""
    if hours * 60 < min_duration_minutes:
        raise Invalid(f"this service is booked for at least {Decimal(min_duration_minutes) / 60:g} hours",
                      field="hours", code=BookingError.BELOW_MINIMUM_DURATION)
    subtotal = int((Decimal(hourly_rate_minor) * hours).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    tax = _share(subtotal, tax_rate_bp)
    return Quote(hours, hourly_rate_minor, subtotal, _share(subtotal, take_rate_bp), tax,
                 subtotal + tax, currency)


# --- cancellation ---


@dataclass(frozen=True)
class CancellationOutcome:
    fee_minor: int  # what the client still pays
    late: bool  # inside the window before the start
    counts_against_cleaner: bool  # a late cancellation by the cleaner is a strike on their record


def cancellation_outcome(
    *, party: Party, state: str, starts_at: datetime, now: datetime, amount_minor: int,
    free_before: timedelta, late_fee_bp: int, charge_late_fee: bool = False,
) -> CancellationOutcome:
    """Free until `free_before` the start; later, a client pays `late_fee_bp` of the price and a
    cleaner (who never pays a fee here) has it counted against them. Cancelling a request the
    cleaner has not accepted yet is always free, and so is a cancellation by staff unless they
    `charge_late_fee`: then the client pays what they would have paid cancelling themselves now
    (Conflict no_fee_due when that is nothing). Only staff may ask for it."""
    if charge_late_fee:
        if party != Party.ADMIN:
            raise Forbidden("only staff may cancel with a fee", code=BookingError.NOT_YOUR_MOVE)
        owed = cancellation_outcome(party=Party.CLIENT, state=state, starts_at=starts_at, now=now,
                                    amount_minor=amount_minor, free_before=free_before, late_fee_bp=late_fee_bp)
        if owed.fee_minor <= 0:
            raise Conflict("no late-cancellation fee is due: the booking is still a request or "
                           "cancelling it now is free", code=BookingError.NO_FEE_DUE)
        return CancellationOutcome(owed.fee_minor, True, False)
    late = now >= starts_at - free_before
    if state == BookingState.REQUESTED or party == Party.ADMIN or not late:
        return CancellationOutcome(0, late, False)
    if party == Party.CLEANER:
        return CancellationOutcome(0, True, True)
    return CancellationOutcome(min(amount_minor, _share(amount_minor, late_fee_bp)), True, False)


MAX_REASON_LENGTH = 500


def check_text(raw: str, *, field: str) -> str:
    """Free text we store: PostgreSQL text cannot hold NUL, so it is refused here, by name."""
    if "\x00" in raw:
        raise Invalid("must not contain NUL characters", field=field)
    return raw


def check_reason(raw: str, *, required: bool) -> str:
    """A cancellation or dispute reason: trimmed, bounded, present when `required`."""
    reason = check_text(raw, field="reason").strip()
    if required and not reason:
        raise Invalid("say why", field="reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise Invalid(f"must be at most {MAX_REASON_LENGTH} characters", field="reason")
    return reason


# --- what a client sends ---

MAX_ADDRESS_LENGTH = 500
MAX_NOTES_LENGTH = 2000


@dataclass(frozen=True)
class Place:
    address: str
    lat: float | None
    lng: float | None
    city: str | None = None


MAX_CITY_LENGTH = 100
# A UK-style postcode at the end of an address part ("London SW1A 1AA"), or a part that is only
# digits and letters in postcode shape; what is left of the last such part is the town.
_POSTCODE = re.compile(r"\s*\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b\s*$|\s*\b\d{4,6}\b\s*", re.IGNORECASE)


def city_of(address: str) -> str | None:
    """The town an address names: its last comma-separated part with letters, without a postcode.

    Apps should send `city` from their geocoder; this is the fallback for a free-text address
    ("Flat 2, 10 High Street, Leeds LS1 4AP" → "Leeds"). None when no part looks like a town.
    """
    for part in reversed(address.split(",")):
        town = " ".join(_POSTCODE.sub(" ", part).split())
        if town and not any(ch.isdigit() for ch in town) and any(ch.isalpha() for ch in town):
            return town[:MAX_CITY_LENGTH]
    return None


def check_city(raw: str | None, *, address: str) -> str | None:
    """The booking's city: the one sent (trimmed, checked), else the one the address names."""
    if raw is None or not raw.strip():
        return city_of(address)
    city = " ".join(check_text(raw, field="city").split())
    if len(city) > MAX_CITY_LENGTH:
        raise Invalid(f"must be at most {MAX_CITY_LENGTH} characters", field="city")
    return city


def check_place(*, address: str, lat: float | None, lng: float | None, city: str | None = None) -> Place:
    """Where the cleaning happens: an address, its city, and coordinates (both or neither) in range."""
    address = " ".join(check_text(address, field="address").split())
    if not address:
        raise Invalid("must not be empty", field="address")
    if len(address) > MAX_ADDRESS_LENGTH:
        raise Invalid(f"must be at most {MAX_ADDRESS_LENGTH} characters", field="address")
    if (lat is None) != (lng is None):
        raise Invalid("send lat and lng together", field="lat" if lat is None else "lng")
    if lat is not None and not -90 <= lat <= 90:
        raise Invalid("must be between -90 and 90", field="lat")
    if lng is not None and not -180 <= lng <= 180:
        raise Invalid("must be between -180 and 180", field="lng")
    return Place(address, lat, lng, check_city(city, address=address))


def check_notes(raw: str) -> str:
    notes = check_text(raw, field="notes").strip()
    if len(notes) > MAX_NOTES_LENGTH:
        raise Invalid(f"must be at most {MAX_NOTES_LENGTH} characters", field="notes")
    return notes


def check_start(start: datetime, *, now: datetime, min_lead: timedelta, max_advance: timedelta) -> datetime:
    """A booking starts on a whole minute, at least `min_lead` from now and within `max_advance`."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise Invalid("must include a time zone offset, e.g. 2026-05-01T09:00:00Z", field="start")
    if start.second or start.microsecond:
        raise Invalid("must be on a whole minute", field="start")
    if start < now + min_lead:
        raise Invalid(f"must be at least {duration_words(min_lead)} from now", field="start",
                      code=BookingError.TOO_LATE)
    if start > now + max_advance:
        raise Invalid(f"must be within {max_advance.days} days from now", field="start")
    return start


def navigation_links(*, lat: float | None, lng: float | None, address: str) -> dict[str, str]:
    """Links that open the cleaner's maps app at the booking: a geo: URI and web map URLs."""
    where = f"{lat:.6f},{lng:.6f}" if lat is not None and lng is not None else None
    query = quote(where or address, safe=",")
    return {
        "geo": f"geo:{where}?q={query}" if where else f"geo:0,0?q={query}",
        "google_maps": f"https://www.google.com/maps/dir/?api=1&destination={query}",
        "apple_maps": f"https://maps.apple.com/?daddr={query}",
        "openstreetmap": (f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lng:.6f}#map=17/{lat:.6f}/{lng:.6f}"
                          if where else f"https://www.openstreetmap.org/search?query={query}"),
    }
