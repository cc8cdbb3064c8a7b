"""Booking actions against the real database: one transaction per transition with its timeline,
audit and outbox rows; no double booking, even past the actions; the scheduled work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from core.availability import WeeklyInterval
from core.clock import utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.supply import OfferedService
from storage import accounts, bookings, service_areas, supply
from storage.db import asyncpg_dsn
from storage.files import file_store
from storage.models import AuditLog, Booking, BookingTransition, OutboxEvent, User
from tests.conftest import STRONG_PASSWORD, unique_email
from tests.core.test_supply import pdf_bytes

ALL_WEEK = [WeeklyInterval(day, 0, 1440) for day in range(7)]
# Central London, about 45 × 55 km: every address the booking tests use lies in it.
LONDON = {"type": "Polygon", "coordinates": [[[-0.5, 51.3], [0.3, 51.3], [0.3, 51.7], [-0.5, 51.7], [-0.5, 51.3]]]}


async def make_user(settings, role: str) -> User:
    return await accounts.create_user(email=unique_email(role), password=STRONG_PASSWORD, name="Test Person",
                                      role=role, settings=settings, verified=True)


async def make_bookable(cleaner: User, settings, *, rate_minor: int = 2000, buffer_minutes: int = 30,
                        schedule=ALL_WEEK) -> User:
    """Turn a cleaner account into an approved one offering 'standard' with the given schedule."""
    await supply.update_profile(actor=cleaner, settings=settings, time_zone="UTC",
                                travel_buffer_minutes=buffer_minutes,
                                services=[OfferedService("standard", rate_minor)])
    await supply.replace_availability(actor=cleaner, rules=schedule, exceptions=[])
    await service_areas.set_service_area(actor=cleaner, geojson=LONDON, settings=settings)
    await supply.submit_verification_document(actor=cleaner, data=pdf_bytes(), settings=settings,
                                              store=file_store(settings))
    staff = await make_user(settings, "admin")
    await supply.decide_verification(cleaner_id=cleaner.id, decision="approve", reason="", actor=staff)
    return cleaner


async def bookable_cleaner(settings, **kwargs) -> User:
    return await make_bookable(await make_user(settings, "cleaner"), settings, **kwargs)


def tomorrow_at(hour: int, *, days: int = 1) -> datetime:
    day = (utcnow() + timedelta(days=days)).date()
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def starting_soon(*, minutes: int = 65) -> datetime:
    """A start on a whole minute about `minutes` from now: past the one-hour minimum lead
    (booking_min_lead_s) and inside the three hours before the start in which the cleaner may set
    off (booking_on_the_way_lead_s), so a test can play the booking out to completion at once."""
    return (utcnow() + timedelta(minutes=minutes + 1)).replace(second=0, microsecond=0)


def request_for(cleaner: User, start: datetime, hours: str = "2", **kwargs) -> bookings.BookingRequest:
    return bookings.BookingRequest(cleaner_id=cleaner.id, service="standard", start=start, hours=Decimal(hours),
                                   address=kwargs.pop("address", "1 Test Street, London"),
                                   lat=kwargs.pop("lat", 51.5), lng=kwargs.pop("lng", -0.12), **kwargs)

async def complete_as_cleaner(booking_id, cleaner: User, settings):
    """The cleaner's side of a booking from request to completed: accept, on the way, start, complete.

    The booking must start within the cleaner's window (see `starting_soon`): earlier they may not set off."""
    booking = None
    for move in (bookings.accept_booking, bookings.mark_on_the_way, bookings.start_booking,
                 bookings.complete_booking):
        booking = await move(booking_id, actor=cleaner, settings=settings)
    return booking


async def test_a_request_is_priced_and_recorded_with_its_first_event(db, settings):
    # given an approved cleaner at £20/h and a client
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    # when the client books two and a half hours
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(9), "2.5"))
    # then it is requested, priced from the cleaner's rate, with tax on top and the take out of it
    assert booking.state == "requested"
    assert (booking.subtotal_minor, booking.tax_minor, booking.amount_minor, booking.platform_fee_minor) == (
        5000, 1000, 6000, 750)
    assert booking.ends_at - booking.starts_at == timedelta(hours=2.5)
    # and the timeline, the audit trail and the outbox say so
    steps = await BookingTransition.filter(booking_id=booking.id).values_list("from_state", "to_state", "party")
    assert steps == [(None, "requested", "client")]
    assert await AuditLog.filter(entity_id=str(booking.id), action="booking.requested").exists()
    event = await OutboxEvent.get(type="booking.requested", payload__contains={"booking_id": str(booking.id)})
    assert event.payload["cleaner_id"] == str(cleaner.id) and event.payload["by"] == "client"


async def test_the_whole_lifecycle_stamps_every_step(db, settings):
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, starting_soon()))
    booking = await complete_as_cleaner(booking.id, cleaner, settings)
    assert booking.state == "completed"
    assert all([booking.accepted_at, booking.on_the_way_at, booking.started_at, booking.completed_at])
    disputed = await bookings.dispute_booking(booking.id, actor=client, reason="bathroom skipped",
                                              settings=settings)
    assert disputed.state == "disputed" and disputed.dispute_reason == "bathroom skipped"
    states = await BookingTransition.filter(booking_id=booking.id).order_by("id").values_list("to_state", flat=True)
    assert states == ["requested", "accepted", "on_the_way", "in_progress", "completed", "disputed"]
    types = set(await OutboxEvent.filter(payload__contains={"booking_id": str(booking.id)})
                .values_list("type", flat=True))
    assert types == {"booking.requested", "booking.accepted", "booking.on_the_way", "booking.started",
                     "booking.completed", "booking.disputed"}


async def test_a_cleaner_cannot_set_off_or_start_days_before_the_booking(db, settings):
    # given an accepted booking that starts in two days, and another on its way (the cleaner set
    # off while the platform allowed setting off three days ahead; it is back to three hours now)
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    ahead = await bookings.create_booking(actor=client, settings=settings,
                                          request=request_for(cleaner, tomorrow_at(9, days=2)))
    await bookings.accept_booking(ahead.id, actor=cleaner, settings=settings)
    started = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(15, days=2)))
    await bookings.accept_booking(started.id, actor=cleaner, settings=settings)
    three_days = settings.model_copy(update={"booking_on_the_way_lead_s": 3 * 86400})
    await bookings.mark_on_the_way(started.id, actor=cleaner, settings=three_days)
    events_before = await OutboxEvent.filter(payload__contains={"booking_id": str(ahead.id)}).count()
    allowed_from = (ahead.starts_at - timedelta(seconds=settings.booking_on_the_way_lead_s)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")

    # when the cleaner marks the first on the way, and starts the second
    with pytest.raises(Conflict) as setting_off:
        await bookings.mark_on_the_way(ahead.id, actor=cleaner, settings=settings)
    with pytest.raises(Conflict) as starting:
        await bookings.start_booking(started.id, actor=cleaner, settings=settings)

    # then both are refused as too early, saying from when (three hours before the start)
    assert setting_off.value.code == starting.value.code == "too_early"
    assert setting_off.value.detail == (f"too early: a cleaner may set off for this booking from "
                                        f"{allowed_from}, 3 hours before its start")
    assert "may start this booking from" in starting.value.detail
    # and nothing was written: the bookings stand, with no new step, audit row or event
    row, still = await Booking.get(id=ahead.id), await Booking.get(id=started.id)
    assert (row.state, row.on_the_way_at, still.state, still.started_at) == ("accepted", None, "on_the_way", None)
    assert await BookingTransition.filter(booking_id=ahead.id).count() == 2
    assert await OutboxEvent.filter(payload__contains={"booking_id": str(ahead.id)}).count() == events_before
    assert not await AuditLog.filter(entity_id=str(ahead.id), action="booking.on_the_way").exists()
    assert not await AuditLog.filter(entity_id=str(started.id), action="booking.start").exists()
    assert not await OutboxEvent.filter(type="booking.started", payload__contains={"booking_id": str(started.id)}).exists()


async def test_a_cleaner_sets_off_within_the_window_and_a_longer_lead_is_a_setting(db, settings):
    # given an accepted booking that starts in about five hours: outside the default three-hour window
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, starting_soon(minutes=5 * 60)))
    await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)
    with pytest.raises(Conflict) as refused:
        await bookings.mark_on_the_way(booking.id, actor=cleaner, settings=settings)
    assert refused.value.code == "too_early"

    # when the platform allows setting off six hours ahead, and the cleaner tries again
    six_hours = settings.model_copy(update={"booking_on_the_way_lead_s": 6 * 3600})
    on_the_way = await bookings.mark_on_the_way(booking.id, actor=cleaner, settings=six_hours)
    started = await bookings.start_booking(booking.id, actor=cleaner, settings=six_hours)

    # then the cleaner is on the way, then at work, and the client is told each
    assert (on_the_way.state, started.state) == ("on_the_way", "in_progress")
    told = await OutboxEvent.filter(payload__contains={"booking_id": str(booking.id)}).values_list("type", flat=True)
    assert {"booking.on_the_way", "booking.started"} <= set(told)


async def test_strangers_get_not_found_and_clients_cannot_do_the_cleaners_part(db, settings):
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    stranger = await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(9)))
    with pytest.raises(NotFound):
        await bookings.accept_booking(booking.id, actor=stranger, settings=settings)
    with pytest.raises(Forbidden):
        await bookings.accept_booking(booking.id, actor=client, settings=settings)
    assert (await Booking.get(id=booking.id)).state == "requested"


async def test_a_late_client_cancellation_costs_the_fee_and_a_late_cleaner_one_counts_against_them(db, settings):
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    soon = (utcnow() + timedelta(hours=3)).replace(second=0, microsecond=0)
    first = await bookings.create_booking(actor=client, settings=settings, request=request_for(cleaner, soon))
    await bookings.accept_booking(first.id, actor=cleaner, settings=settings)
    cancelled = await bookings.cancel_booking(first.id, actor=client, reason="plans changed", settings=settings)
    assert (cancelled.cancelled_by, cancelled.late_cancellation, cancelled.cancellation_fee_minor) == (
        "client", True, first.amount_minor // 2)
    second = await bookings.create_booking(actor=client, settings=settings, request=request_for(cleaner, soon))
    await bookings.accept_booking(second.id, actor=cleaner, settings=settings)
    by_cleaner = await bookings.cancel_booking(second.id, actor=cleaner, reason="van broke down", settings=settings)
    assert (by_cleaner.cancellation_fee_minor, by_cleaner.counts_against_cleaner) == (0, True)
    event = await OutboxEvent.get(type="booking.cancelled", payload__contains={"booking_id": str(second.id)})
    assert event.payload["reason"] == "van broke down" and event.payload["by"] == "cleaner"
    with pytest.raises(Invalid):
        await bookings.cancel_booking(second.id, actor=client, reason=" ", settings=settings)


async def test_overlaps_and_the_travel_buffer_are_refused(db, settings):
    cleaner = await bookable_cleaner(settings, buffer_minutes=30)
    client = await make_user(settings, "client")
    await bookings.create_booking(actor=client, settings=settings, request=request_for(cleaner, tomorrow_at(9)))
    for start in (tomorrow_at(10), tomorrow_at(11).replace(minute=15), tomorrow_at(7).replace(minute=45)):
        with pytest.raises(Conflict) as raised:
            await bookings.create_booking(actor=client, settings=settings, request=request_for(cleaner, start))
        assert raised.value.code == "slot_taken"
    # exactly the buffer after the end is fine
    later = await bookings.create_booking(actor=client, settings=settings,
                                          request=request_for(cleaner, tomorrow_at(11).replace(minute=30)))
    assert later.state == "requested"


async def test_the_database_refuses_an_overlap_written_past_the_actions(db, settings, services):
    # given a booked cleaner
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(9)))
    # when a raw insert bypasses the lock and the availability check
    conn = await asyncpg.connect(asyncpg_dsn(services["DATABASE_URL"]))
    try:
        with pytest.raises(asyncpg.ExclusionViolationError):
            await conn.execute(
                """INSERT INTO bookings (id, client_id, cleaner_id, service_id, state, starts_at, ends_at)
                   VALUES (gen_random_uuid(), $1, $2, 'standard', 'requested', $3, $4)""",
                client.id, cleaner.id, booking.starts_at + timedelta(hours=1), booking.ends_at + timedelta(hours=1))
    finally:
        await conn.close()
    assert await Booking.filter(cleaner_id=cleaner.id).count() == 1


async def test_bookings_outside_the_schedule_or_of_unapproved_cleaners_are_refused(db, settings):
    client = await make_user(settings, "client")
    mornings = await bookable_cleaner(settings, schedule=[WeeklyInterval(d, 480, 720) for d in range(7)])
    with pytest.raises(Conflict):
        await bookings.create_booking(actor=client, settings=settings, request=request_for(mornings, tomorrow_at(11)))
    unapproved = await make_user(settings, "cleaner")
    with pytest.raises(Invalid) as raised:
        await bookings.create_booking(actor=client, settings=settings, request=request_for(unapproved, tomorrow_at(9)))
    assert raised.value.code == "cleaner_not_bookable"
    with pytest.raises(Invalid) as raised:
        await bookings.create_booking(actor=client, settings=settings,
                                      request=request_for(mornings, tomorrow_at(9), "1.5"))
    assert raised.value.code == "below_minimum_duration"


async def test_unanswered_requests_expire_and_free_the_time(db, settings):
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(9, days=3)))
    # not yet: the request is fresh
    assert booking.id not in await bookings.expire_unanswered(settings=settings)
    # when the scheduled work runs after the request's time to live
    later = utcnow() + timedelta(seconds=settings.booking_request_ttl_s + 1)
    expired = await bookings.expire_unanswered(settings=settings, now=later)
    # then it is expired by the system, and the same time can be booked again
    assert booking.id in expired
    row = await Booking.get(id=booking.id)
    assert row.state == "expired" and row.expired_at is not None
    assert await OutboxEvent.filter(type="booking.expired", payload__contains={"by": "system",
                                                                               "booking_id": str(booking.id)}).exists()
    again = await bookings.create_booking(actor=client, settings=settings,
                                          request=request_for(cleaner, tomorrow_at(9, days=3)))
    assert again.state == "requested"


async def test_reminders_are_queued_once_for_accepted_bookings_starting_soon(db, settings):
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    soon = (utcnow() + timedelta(hours=5)).replace(second=0, microsecond=0)
    accepted = await bookings.create_booking(actor=client, settings=settings, request=request_for(cleaner, soon))
    await bookings.accept_booking(accepted.id, actor=cleaner, settings=settings)
    unanswered = await bookings.create_booking(actor=client, settings=settings,
                                               request=request_for(cleaner, soon + timedelta(hours=3)))
    first = await bookings.reminders_due(settings=settings)
    assert accepted.id in first and unanswered.id not in first
    assert accepted.id not in await bookings.reminders_due(settings=settings)
    reminders = await OutboxEvent.filter(type="booking.reminder_due",
                                         payload__contains={"booking_id": str(accepted.id)}).count()
    assert reminders == 1


async def test_listing_pages_through_the_callers_bookings_by_state(db, settings):
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    made = [await bookings.create_booking(actor=client, settings=settings,
                                          request=request_for(cleaner, tomorrow_at(6 + 3 * i)))
            for i in range(5)]
    await bookings.accept_booking(made[0].id, actor=cleaner, settings=settings)
    seen, cursor = [], None
    while True:
        page, cursor = await bookings.list_bookings(actor=client, state=None, cursor=cursor, limit=2)
        seen += [b.id for b in page]
        if cursor is None:
            break
    assert seen == [b.id for b in reversed(made)]
    accepted, _ = await bookings.list_bookings(actor=cleaner, state="accepted", cursor=None, limit=10)
    assert [b.id for b in accepted] == [made[0].id]
    other, _ = await bookings.list_bookings(actor=await make_user(settings, "client"), state=None, cursor=None,
                                            limit=10)
    assert other == []


async def test_completing_with_other_hours_requotes_at_the_booked_rate_and_keeps_the_quote(db, settings):
    # given two 2-hour bookings at £20/h starting soon with two cleaners, started (payments are off here)
    cleaner, other, client = (await bookable_cleaner(settings), await bookable_cleaner(settings),
                              await make_user(settings, "client"))
    longer = await bookings.create_booking(actor=client, settings=settings, request=request_for(cleaner, starting_soon()))
    same = await bookings.create_booking(actor=client, settings=settings, request=request_for(other, starting_soon()))
    for booking, by in ((longer, cleaner), (same, other)):
        for move in (bookings.accept_booking, bookings.mark_on_the_way, bookings.start_booking):
            await move(booking.id, actor=by, settings=settings)
    # when the cleaner completes the first after 3.25 hours and the second as booked
    done = await bookings.complete_booking(longer.id, actor=cleaner, settings=settings, hours="3.25")
    plain = await bookings.complete_booking(same.id, actor=other, settings=settings)
    # then the first is priced for 3.25 hours (tax on top, the take out of it) and the quote is kept
    assert (done.hours, done.subtotal_minor, done.tax_minor, done.amount_minor, done.platform_fee_minor) == (
        Decimal("3.25"), 6500, 1300, 7800, 975)
    assert (done.quoted_hours, done.quoted_subtotal_minor, done.quoted_tax_minor, done.quoted_amount_minor) == (
        Decimal("2"), 4000, 800, 4800)
    assert (plain.hours, plain.amount_minor, plain.quoted_amount_minor) == (Decimal("2"), 4800, 4800)
    # and the completion is audited and announced with both prices
    audit = await AuditLog.get(entity_id=str(longer.id), action="booking.complete")
    assert (audit.after["quoted_amount_minor"], audit.after["amount_minor"]) == (4800, 7800)
    event = await OutboxEvent.get(type="booking.completed", payload__contains={"booking_id": str(longer.id)})
    assert (event.payload["quoted_hours"], event.payload["hours"]) == ("2.00", "3.25")


async def test_hours_over_the_extra_limit_are_refused_and_the_booking_stays_in_progress(db, settings):
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings, request=request_for(cleaner, starting_soon()))
    for move in (bookings.accept_booking, bookings.mark_on_the_way, bookings.start_booking):
        await move(booking.id, actor=cleaner, settings=settings)
    one_extra = settings.model_copy(update={"booking_max_extra_hours": 1})
    with pytest.raises(Invalid) as refused:
        await bookings.complete_booking(booking.id, actor=cleaner, settings=one_extra, hours="3.25")
    assert ([e.field for e in refused.value.errors], refused.value.code) == (["hours"], "over_extra_hours")
    row = await Booking.get(id=booking.id)
    assert (row.state, row.amount_minor) == ("in_progress", 4800)
    assert not await OutboxEvent.filter(type="booking.completed",
                                        payload__contains={"booking_id": str(booking.id)}).exists()
