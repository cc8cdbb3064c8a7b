"""Staff finding bookings, reading their timeline, cancelling them and marking disputes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from core.clock import utcnow
from core.settings import Settings
from storage import bookings, payments
from storage.models import AuditLog, Booking, PayoutAccount
from tests.admin.conftest import AdminProcess, Dashboard, Person, start_admin
from tests.fakes.stripe import API_KEY, StripeFake, event
from tests.jobs.test_capture_retry import WEBHOOK_SECRET, deliver, in_progress
from tests.storage.test_bookings import (
    bookable_cleaner,
    complete_as_cleaner,
    make_user,
    request_for,
    starting_soon,
    tomorrow_at,
)


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
    # when staff filter by state, by date range, by cleaner, by client and by city, and search
    by_state = await listed(filter=f"state__eq=accepted AND cleaner__eq={later.cleaner_id}")
    by_dates = await listed(filter=f"starts_at__between={day_after.isoformat()}.."
                                   f"{(day_after + timedelta(days=1)).isoformat()}")
    by_client = await listed(filter=f"client__eq={tomorrow.client_id}")
    by_id = await listed(q=str(later.id))
    by_address = await listed(q="filterable lane")
    nobody = await listed(filter="cleaner__eq=not-a-user-id")
    by_city = await listed(filter=f"city__eq=Leeds AND client__eq={later.client_id}")
    other_city = await listed(filter=f"city__eq=London AND client__eq={later.client_id}")

    # then each shows exactly the booking it describes
    assert str(later.id) in by_state and str(tomorrow.id) not in by_state
    assert str(later.id) in by_dates and str(tomorrow.id) not in by_dates
    assert str(tomorrow.id) in by_client and str(later.id) not in by_client
    assert str(later.id) in by_id and str(tomorrow.id) not in by_id
    assert str(later.id) in by_address and str(tomorrow.id) not in by_address
    assert str(later.id) not in nobody and str(tomorrow.id) not in nobody
    assert str(later.id) in by_city and str(later.id) not in other_city


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
    # given a completed booking (it started soon) and a fresh request
    done, fresh = await booked(settings, start=starting_soon()), await booked(settings)
    cleaner = await done.cleaner
    await complete_as_cleaner(done.id, cleaner, settings)

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


# --- refunds, through a dashboard whose payments go to the Stripe fake ---


@pytest.fixture(scope="module")
def paid_admin(services: dict[str, str], tmp_root: Path, stripe_fake: StripeFake) -> Iterator[AdminProcess]:
    process = start_admin({**services, "SPOTLESS_STRIPE_API_KEY": API_KEY,
                           "SPOTLESS_STRIPE_API_BASE": stripe_fake.url}, tmp_root)
    yield process
    process.stop()


@pytest.fixture
def paid(settings: Settings, stripe_fake: StripeFake) -> Settings:
    return settings.model_copy(update={"stripe_api_key": API_KEY, "stripe_api_base": stripe_fake.url,
                                       "stripe_webhook_secret": WEBHOOK_SECRET})


@pytest_asyncio.fixture
async def paid_dashboard(paid_admin: AdminProcess, staff: Person) -> AsyncIterator[Dashboard]:
    async with httpx.AsyncClient(base_url=paid_admin.url, timeout=30) as client:
        dashboard = Dashboard(client)
        await dashboard.sign_in(staff)
        yield dashboard


async def test_staff_refund_part_then_the_rest_from_the_booking_page(
        paid_dashboard: Dashboard, staff: Person, paid: Settings, stripe_fake: StripeFake):
    # given a completed booking whose price (4800) was captured
    booking, _, cleaner = await in_progress(paid, stripe_fake)
    booking = await bookings.complete_booking(booking.id, actor=cleaner, settings=paid)
    assert (booking.payment_status, booking.captured_minor) == ("captured", 4800)
    offered = await paid_dashboard.client.get("/admin/booking/detail", params={"pk": str(booking.id)})
    assert 'data-sa-name="refund"' in offered.text

    # when staff refund 1000 with a reason, then leave the amount blank
    part = await paid_dashboard.row_action("booking", "refund", str(booking.id),
                                           form={"amount_minor": "1000", "reason": "one room skipped"})
    rest = await paid_dashboard.row_action("booking", "refund", str(booking.id),
                                           form={"amount_minor": "", "reason": "dispute upheld"})

    # then Stripe refunded 1000 and then the remaining 3800, and the booking is refunded
    assert part.status_code == 200, part.text
    assert rest.status_code == 200, rest.text
    refunded = await Booking.get(id=booking.id)
    assert (refunded.refunded_minor, refunded.payment_status) == (4800, "refunded")
    assert stripe_fake.objects[booking.payment_intent_id]["amount_refunded"] == 4800
    rows = await AuditLog.filter(entity_id=str(booking.id), action="booking.refunded").order_by("id")
    assert [(r.after["amount_minor"], r.after["reason"], str(r.actor_id)) for r in rows] == [
        (1000, "one room skipped", staff.id), (3800, "dispute upheld", staff.id)]
    # and the action is no longer offered on the booking
    detail = await paid_dashboard.client.get("/admin/booking/detail", params={"pk": str(booking.id)})
    assert detail.status_code == 200 and 'data-sa-name="refund"' not in detail.text


async def test_a_refund_form_with_a_bad_amount_or_no_reason_changes_nothing(
        paid_dashboard: Dashboard, paid: Settings, stripe_fake: StripeFake):
    # given a captured booking and one that captured nothing (still in progress)
    booking, _, cleaner = await in_progress(paid, stripe_fake)
    await bookings.complete_booking(booking.id, actor=cleaner, settings=paid)
    held, _, _ = await in_progress(paid, stripe_fake)
    calls = len(stripe_fake.calls("/v1/refunds"))

    # when staff submit amounts over the captured one, not numbers, no reason, or refund the held one
    over = await paid_dashboard.row_action("booking", "refund", str(booking.id),
                                           form={"amount_minor": "4801", "reason": "goodwill"})
    junk = await paid_dashboard.row_action("booking", "refund", str(booking.id),
                                           form={"amount_minor": "12.50", "reason": "goodwill"})
    silent = await paid_dashboard.row_action("booking", "refund", str(booking.id),
                                             form={"amount_minor": "100", "reason": ""})
    nothing = await paid_dashboard.row_action("booking", "refund", str(held.id), form={"reason": "goodwill"})

    # then each is a problem that says what is wrong, and Stripe was never asked
    assert (over.status_code, over.json()["errors"][0]["field"]) == (422, "amount_minor")
    assert (junk.status_code, junk.json()["errors"][0]["field"]) == (422, "amount_minor")
    assert (silent.status_code, silent.json()["errors"][0]["field"]) == (422, "reason")
    assert nothing.status_code == 400  # not offered: nothing was captured (the API says 409 nothing_captured)
    assert len(stripe_fake.calls("/v1/refunds")) == calls
    assert (await Booking.get(id=booking.id)).refunded_minor == 0


async def test_staff_find_bookings_whose_money_could_not_be_settled(
        paid_dashboard: Dashboard, paid: Settings, stripe_fake: StripeFake):
    # given a completed booking whose capture Stripe refused, and one captured normally
    failed, _, cleaner = await in_progress(paid, stripe_fake)
    stripe_fake.fail_next(f"/{failed.payment_intent_id}/capture")
    await bookings.complete_booking(failed.id, actor=cleaner, settings=paid)
    fine, _, other = await in_progress(paid, stripe_fake)
    await bookings.complete_booking(fine.id, actor=other, settings=paid)
    # when staff filter the bookings by payment status
    page = await paid_dashboard.client.get("/admin/booking/list", params={
        "page_size": 100, "filter": "payment_status__eq=settle_failed"})
    # then the one to follow up is listed and the settled one is not
    assert page.status_code == 200, page.text
    assert str(failed.id) in page.text and str(fine.id) not in page.text


async def test_staff_cancel_from_the_booking_page_with_the_late_fee_or_without(
        paid_dashboard: Dashboard, staff: Person, paid: Settings, stripe_fake: StripeFake):
    # given two paid bookings starting in three hours, accepted (a client cancelling now would pay half)
    soon = (utcnow() + timedelta(hours=3)).replace(second=0, microsecond=0)
    cleaner, client = await bookable_cleaner(paid), await make_user(paid, "client")
    await payments.start_onboarding(actor=cleaner, settings=paid)
    account = await PayoutAccount.get(cleaner_id=cleaner.id)
    await deliver(event("account.updated", stripe_fake.enable_account(account.stripe_account_id)), paid)
    made = [await bookings.create_booking(actor=client, settings=paid, request=request_for(
        cleaner, start, payment_method_id="pm_card_visa")) for start in (soon, soon + timedelta(hours=4))]
    for booking in made:
        await bookings.accept_booking(booking.id, actor=cleaner, settings=paid)
    page = await paid_dashboard.client.get("/admin/booking/detail", params={"pk": str(made[0].id)})
    assert 'data-sa-name="cancel"' in page.text and "charge_late_fee" in page.text  # the with-fee box

    # when staff cancel the first ticking "with fee", and the second without
    charged = await paid_dashboard.row_action("booking", "cancel", str(made[0].id),
                                              form={"reason": "client refused entry", "charge_late_fee": "yes"})
    free = await paid_dashboard.row_action("booking", "cancel", str(made[1].id), form={"reason": "cleaner ill"})

    # then the first captured the 2400 fee and the second's hold was released, each audited
    assert charged.status_code == 200, charged.text
    assert free.status_code == 200, free.text
    first, second = [await Booking.get(id=b.id) for b in made]
    assert (first.state, first.cancellation_fee_minor, first.payment_status, first.captured_minor) == (
        "cancelled", 2400, "partially_captured", 2400)
    assert stripe_fake.objects[first.payment_intent_id]["amount_received"] == 2400
    assert (second.state, second.cancellation_fee_minor, second.payment_status) == ("cancelled", 0, "canceled")
    assert stripe_fake.objects[second.payment_intent_id]["status"] == "canceled"
    rows = await AuditLog.filter(entity_id__in=[str(b.id) for b in made], action="booking.cancel")
    assert sorted((r.after["cancellation_fee_minor"], str(r.actor_id)) for r in rows) == [
        (0, staff.id), (2400, staff.id)]


async def test_a_late_cancellation_by_the_cleaner_shows_as_a_strike_staff_can_filter_on(
        dashboard: Dashboard, settings: Settings):
    # given a cleaner who calls off an accepted booking three hours before it starts (inside the
    # free-cancellation window), and another cleaner who cancels one days ahead
    soon = await booked(settings, start=(utcnow() + timedelta(hours=3)).replace(second=0, microsecond=0))
    await bookings.accept_booking(soon.id, actor=await soon.cleaner, settings=settings)
    await bookings.cancel_booking(soon.id, actor=await soon.cleaner, reason="van broke down", settings=settings)
    early = await booked(settings, start=tomorrow_at(10, days=5))
    await bookings.accept_booking(early.id, actor=await early.cleaner, settings=settings)
    await bookings.cancel_booking(early.id, actor=await early.cleaner, reason="holiday", settings=settings)

    # when staff open the late one and filter the list by strikes
    detail = await dashboard.client.get("/admin/booking/detail", params={"pk": str(soon.id)})
    def strikes_of(cleaner_id: object) -> dict[str, object]:
        return {"page_size": 100, "filter": f"counts_against_cleaner__is_true AND cleaner__eq={cleaner_id}"}

    strikes = await dashboard.client.get("/admin/booking/list", params=strikes_of(soon.cleaner_id))
    none_for_early = await dashboard.client.get("/admin/booking/list", params=strikes_of(early.cleaner_id))

    # then the booking page says it counts against the cleaner, and the filter finds exactly it
    assert detail.status_code == 200 and "Strike (cleaner cancelled late)" in detail.text
    assert strikes.status_code == 200, strikes.text
    assert str(soon.id) in strikes.text and str(early.id) not in strikes.text
    assert str(early.id) not in none_for_early.text
