"""Booking reminders with a controlled clock: 24 hours and 1 hour before the start, each once per
booking, only the nearer one for a booking made late, none for a booking cancelled meanwhile."""

from __future__ import annotations

from datetime import timedelta

from storage import bookings
from storage.models import Booking, BookingReminder, OutboxEvent
from tests.storage.test_bookings import bookable_cleaner, make_user, request_for, tomorrow_at

HOUR = timedelta(hours=1)


async def accepted_booking(settings, *, days: int = 2) -> Booking:
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(10, days=days)))
    return await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)


async def reminder_leads(booking: Booking) -> list[int]:
    events = await OutboxEvent.filter(type="booking.reminder_due",
                                      payload__contains={"booking_id": str(booking.id)}).order_by("id")
    return [e.payload["reminder_lead_s"] for e in events]


async def test_a_day_before_and_an_hour_before_each_once(db, settings):
    # given an accepted booking
    booking = await accepted_booking(settings)
    start = booking.starts_at
    # when the scheduler runs from two days before until the start
    sent = {}
    for before in (48 * HOUR, 25 * HOUR, 23 * HOUR, 22 * HOUR, 2 * HOUR, 59 * timedelta(minutes=1),
                   30 * timedelta(minutes=1), timedelta(minutes=1)):
        sent[before] = booking.id in await bookings.reminders_due(settings=settings, now=start - before)
    # then the day-before reminder went at the first run inside 24 hours, the hour-before at the
    # first run inside the hour, and nothing else
    assert [before for before, went in sent.items() if went] == [23 * HOUR, 59 * timedelta(minutes=1)]
    assert await reminder_leads(booking) == [86400, 3600]
    assert await BookingReminder.filter(booking_id=booking.id).count() == 2
    # and nothing is sent once the booking has started
    assert booking.id not in await bookings.reminders_due(settings=settings, now=start + timedelta(minutes=5))


async def test_a_booking_made_inside_the_last_hour_gets_only_the_hour_reminder(db, settings):
    booking = await accepted_booking(settings)
    start = booking.starts_at
    # when the first run after acceptance is 50 minutes before the start
    assert booking.id in await bookings.reminders_due(settings=settings, now=start - timedelta(minutes=50))
    assert booking.id not in await bookings.reminders_due(settings=settings, now=start - timedelta(minutes=40))
    # then one reminder, the nearer one
    assert await reminder_leads(booking) == [3600]


async def test_a_booking_cancelled_after_its_first_reminder_gets_no_second(db, settings):
    booking = await accepted_booking(settings)
    start = booking.starts_at
    assert booking.id in await bookings.reminders_due(settings=settings, now=start - 20 * HOUR)
    client = await booking.client
    await bookings.cancel_booking(booking.id, actor=client, reason="plans changed", settings=settings)
    assert booking.id not in await bookings.reminders_due(settings=settings, now=start - timedelta(minutes=30))
    assert await reminder_leads(booking) == [86400]
