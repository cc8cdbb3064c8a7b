"""Seed step for demo bookings: fifteen requests from clients to cleaners who serve their home.

Bookings go through the same actions the apps use: the client requests, the cleaner accepts,
heads over, starts and completes, or declines, or the client cancels. Those actions only book
future time (a booking cannot be made in the past), so every demo booking is requested for the
next few weeks. A cleaner sets off no earlier than `booking_on_the_way_lead_s` before the start,
so a completed booking is history: once accepted, it is dated back COMPLETED_WEEKS_AGO weeks (same
weekday and local time, so still in the cleaner's hours) before the cleaner plays it out. That
date is the one write the seed makes past the actions, because no action books the past.
Unanswered requests expire like any other after `booking_request_ttl_s` once the scheduler runs.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from cli.seed.accounts import users_of
from cli.seed.city import (
    DEMO_CLEANERS,
    DEMO_CLIENTS,
    DEMO_TIME_ZONE,
    SeedReport,
    cleaners_serving,
    offered_service_ids,
    schedule_of,
)
from core.clock import utcnow
from core.settings import Settings
from storage import bookings, payments, supply
from storage.bookings import BookingRequest
from storage.models import Booking, User


class Outcome(StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DECLINED = "declined"


# (client index, which of the cleaners serving their home: 0 = nearest, outcome)
BOOKING_PLAN: tuple[tuple[int, int, Outcome], ...] = (
    *((client, 0, outcome) for client, outcome in enumerate((
        Outcome.COMPLETED, Outcome.ACCEPTED, Outcome.REQUESTED, Outcome.COMPLETED, Outcome.CANCELLED,
        Outcome.ACCEPTED, Outcome.REQUESTED, Outcome.COMPLETED, Outcome.DECLINED, Outcome.ACCEPTED))),
    *((client, 1, outcome) for client, outcome in (
        (0, Outcome.REQUESTED), (1, Outcome.COMPLETED), (3, Outcome.CANCELLED), (4, Outcome.ACCEPTED),
        (7, Outcome.REQUESTED))),
)
NOTES = ("Key is with the concierge.", "Please focus on the kitchen and bathroom.", "",
         "The cat is friendly; please keep the balcony door shut.", "Products are under the sink.")
FIRST_DAY_AHEAD = 2  # the earliest booking is the day after tomorrow (local time)
# Completed bookings are moved this far back, all by the same amount: a cleaner's demo bookings
# are on different days ahead, so they stay on different days in the past (no overlap), and
# every demo booking lies well within eight weeks ahead, so each lands in the past.
COMPLETED_WEEKS_AGO = 8


def slot(index: int, *, not_before: date, hours: Decimal, taken: set[date]) -> datetime:
    """The first start on or after `not_before`, within the cleaner's schedule, on a day the
    cleaner has no other demo booking: an hour after the day's start when the job still fits."""
    minutes = int(hours * 60)
    day = not_before
    while True:
        for rule in schedule_of(index):
            if rule.weekday == day.weekday() and day not in taken and \
                    rule.end_minute - rule.start_minute >= minutes:
                start = rule.start_minute + 60 if rule.start_minute + 60 + minutes <= rule.end_minute \
                    else rule.start_minute
                return datetime.combine(day, time(start // 60, start % 60), ZoneInfo(DEMO_TIME_ZONE))
        day += timedelta(days=1)


async def date_back(booking: Booking, *, weeks: int) -> Booking:
    """The accepted booking `weeks` earlier, at the same local time of day in the demo city."""
    zone = ZoneInfo(DEMO_TIME_ZONE)
    local = booking.starts_at.astimezone(zone).replace(tzinfo=None) - timedelta(weeks=weeks)
    starts_at = local.replace(tzinfo=zone)
    if starts_at + (booking.ends_at - booking.starts_at) >= utcnow():
        raise RuntimeError(f"demo booking {booking.id} is over {weeks} weeks ahead: it cannot be dated back "
                           "into the past")
    await Booking.filter(id=booking.id).update(starts_at=starts_at,
                                               ends_at=starts_at + (booking.ends_at - booking.starts_at))
    return await Booking.get(id=booking.id)


async def play_out(booking: Booking, outcome: Outcome, *, client: User, cleaner: User,
                   settings: Settings) -> None:
    """Move a fresh request to `outcome` the way its client and cleaner would."""
    if outcome == Outcome.DECLINED:
        await bookings.decline_booking(booking.id, actor=cleaner, settings=settings,
                                       reason="Fully booked that week, sorry.")
        return
    if outcome == Outcome.REQUESTED:
        return
    await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)
    if outcome == Outcome.CANCELLED:
        await bookings.cancel_booking(booking.id, actor=client, settings=settings,
                                      reason="Plans changed, we will be away.")
    elif outcome == Outcome.COMPLETED:
        booking = await date_back(booking, weeks=COMPLETED_WEEKS_AGO)
        for move in (bookings.mark_on_the_way, bookings.start_booking, bookings.complete_booking):
            await move(booking.id, actor=cleaner, settings=settings)


async def seed_bookings(settings: Settings, report: SeedReport) -> None:
    """BOOKING_PLAN, unless a demo client already has a booking."""
    clients, cleaners = await users_of(DEMO_CLIENTS), await users_of(DEMO_CLEANERS)
    existing = await Booking.filter(client_id__in=[c.id for c in clients]).count()
    if existing:
        report.add(f"bookings: 0 created ({existing} demo client bookings already there)")
        return
    if payments.enabled(settings):  # the demo clients have no saved cards to hold a price on
        report.add("bookings: 0 created (payments are on; seed with SPOTLESS_STRIPE_API_KEY empty)")
        return
    catalogue = {service.id: service for service in await supply.list_services()}
    today = utcnow().astimezone(ZoneInfo(DEMO_TIME_ZONE)).date()
    taken: dict[int, set[date]] = {}
    made: Counter[str] = Counter()
    for number, (client_index, rank, outcome) in enumerate(BOOKING_PLAN):
        person = DEMO_CLIENTS[client_index]
        cleaner_index = cleaners_serving(person.home)[rank]
        offered = [s for s in offered_service_ids(cleaner_index) if s in catalogue]
        service = catalogue[offered[number % len(offered)]]
        hours = Decimal(max(service.min_duration_minutes, 120)) / 60
        start = slot(cleaner_index, not_before=today + timedelta(days=FIRST_DAY_AHEAD + number),
                     hours=hours, taken=taken.setdefault(cleaner_index, set()))
        taken[cleaner_index].add(start.date())
        request = BookingRequest(
            cleaner_id=cleaners[cleaner_index].id, service=service.id, start=start, hours=hours,
            address=f"Flat {number + 1}, 12 High Street, {person.neighbourhood}, London",
            lat=person.home[0], lng=person.home[1], notes=NOTES[number % len(NOTES)])
        booking = await bookings.create_booking(actor=clients[client_index], request=request,
                                                settings=settings)
        await play_out(booking, outcome, client=clients[client_index],
                       cleaner=cleaners[cleaner_index], settings=settings)
        made[outcome] += 1
    report.add(f"bookings: {sum(made.values())} created: "
               + ", ".join(f"{made[o]} {o}" for o in Outcome))
