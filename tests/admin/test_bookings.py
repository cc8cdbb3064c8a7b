"""Staff finding bookings, reading their timeline, cancelling them and marking disputes."""

from __future__ import annotations

from datetime import timedelta

from core.settings import Settings
from storage import bookings
from storage.models import AuditLog, Booking
from tests.admin.conftest import Dashboard, Person
from tests.storage.test_bookings import bookable_cleaner, make_user, request_for, tomorrow_at


async def booked(settings: Settings, **kwargs) -> Booking:
    """A client's request to a fresh approved cleaner, made through the booking action."""
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    return await bookings.create_booking(actor=client, settings=settings,
                                         request=request_for(cleaner, kwargs.pop("start", tomorrow_at(9)),
                                                             **kwargs))


async def test_bookings_list_filters_by_state_dates_parties_and_finds_by_id_or_address(
        dashboard: Dashboard, settings: Settings):
    # given a request for tomorrow, and an accepted booking for the day after at a distinctive address
    tomorrow = await booked(settings)
    later = await booked(settings, start=tomorrow_at(10, days=2), address="7 Filterable Lane, Leeds")
    await bookings.accept_booking(later.id, actor=await later.cleaner, settings=settings)

    async def listed(**params: str) -> str:
        page = await dashboard.client.get("/admin/booking/list", params={"page_size": 100, **params})
        assert page.status_code == 200, page.text
        return page.text

    day_after = tomorrow_at(0, days=2)
    # when staff filter by state, by date range, by cleaner and by client, and search
    by_state = await listed(filter=f"state__eq=accepted AND cleaner__eq={later.cleaner_id}")
    by_dates = await listed(filter=f"starts_at__between={day_after.isoformat()}.."
                                   f"{(day_after + timedelta(days=1)).isoformat()}")
    by_client = await listed(filter=f"client__eq={tomorrow.client_id}")
    by_id = await listed(q=str(later.id))
    by_address = await listed(q="filterable lane")
    nobody = await listed(filter="cleaner__eq=not-a-user-id")

    # then each shows exactly the booking it describes
    assert str(later.id) in by_state and str(tomorrow.id) not in by_state
    assert str(later.id) in by_dates and str(tomorrow.id) not in by_dates
    assert str(tomorrow.id) in by_client and str(later.id) not in by_client
    assert str(later.id) in by_id and str(tomorrow.id) not in by_id
    assert str(later.id) in by_address and str(tomorrow.id) not in by_address
    assert str(later.id) not in nobody and str(tomorrow.id) not in nobody


async def test_staff_cancel_a_booking_for_free_and_the_timeline_shows_it(
        dashboard: Dashboard, staff: Person, settings: Settings):
    # given an accepted booking
    booking = await booked(settings)
    await bookings.accept_booking(booking.id, actor=await booking.cleaner, settings=settings)

    # when staff cancel it without a reason, then with one
    refused = await dashboard.row_action("booking", "cancel", str(booking.id), form={"reason": ""})
    response = await dashboard.row_action("booking", "cancel", str(booking.id),
                                          form={"reason": "cleaner is ill, client agreed"})

    # then the first is refused with the booking rule's message, the second cancels it for free
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "reason", "message": "say why"}]
    assert response.status_code == 200, response.text
    cancelled = await Booking.get(id=booking.id)
    assert (cancelled.state, cancelled.cancelled_by) == ("cancelled", "admin")
    assert cancelled.cancellation_fee_minor == 0
    assert cancelled.cancel_reason == "cleaner is ill, client agreed"
    row = await AuditLog.get(entity_id=str(booking.id), action="booking.cancel")
    assert str(row.actor_id) == staff.id
    # and the detail page's timeline reads requested, accepted, cancelled, with the reason
    detail = await dashboard.client.get("/admin/booking/detail", params={"pk": str(booking.id)})
    assert detail.status_code == 200, detail.text
    timeline = detail.text[detail.text.index("Timeline"):]
    assert timeline.index("requested") < timeline.index("accepted") < timeline.index("cancelled")
    assert "cleaner is ill, client agreed" in timeline


async def test_staff_mark_a_completed_booking_disputed_but_not_a_requested_one(
        dashboard: Dashboard, settings: Settings):
    # given a completed booking and a fresh request
    done, fresh = await booked(settings), await booked(settings)
    cleaner = await done.cleaner
    for move in (bookings.accept_booking, bookings.mark_on_the_way, bookings.start_booking,
                 bookings.complete_booking):
        await move(done.id, actor=cleaner, settings=settings)

    # when staff mark each disputed
    disputed = await dashboard.row_action("booking", "dispute", str(done.id), form={"reason": "oven untouched"})
    refused = await dashboard.row_action("booking", "dispute", str(fresh.id), form={"reason": "too early"})

    # then the completed one is disputed with the reason; the request is left as it was
    assert disputed.status_code == 200, disputed.text
    after = await Booking.get(id=done.id)
    assert (after.state, after.dispute_reason) == ("disputed", "oven untouched")
    assert refused.status_code == 400
    assert (await Booking.get(id=fresh.id)).state == "requested"


async def test_bookings_cannot_be_created_or_edited_from_the_dashboard(dashboard: Dashboard, settings: Settings):
    # given a booking
    booking = await booked(settings)

    # when staff open its edit form or the create form
    edit = await dashboard.client.get("/admin/booking/edit", params={"pk": str(booking.id)})
    create = await dashboard.client.get("/admin/booking/create")

    # then both are refused: bookings move only through their actions
    assert edit.status_code == create.status_code == 403
