"""Staff running the marketplace from the dashboard in a real browser: sign in, approve a cleaner
who then shows up in clients' search, refund a booking, retry a dead job; and the doors that stay
shut (a non-staff account, a form without its security token)."""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext
from playwright.async_api import Page

from core.settings import Settings
from storage import bookings
from storage.models import AuditLog, Booking, CleanerProfile, FailedJob
from tests.admin.browser.conftest import run_row_action, screenshot, sign_in
from tests.admin.conftest import MakePerson, Person
from tests.admin.test_jobs import dead_job
from tests.core.test_supply import pdf_bytes
from tests.edge.test_search import make_cleaner, search, somewhere, square
from tests.edge.test_supply import upload_document
from tests.fakes.stripe import API_KEY, StripeFake
from tests.jobs.test_capture_retry import WEBHOOK_SECRET, in_progress


async def test_staff_approve_a_pending_cleaner_who_then_appears_in_search(
        page: Page, staff: Person, api: Any, make_account: Any):
    # given a cleaner who set up an area near a place and uploaded an identity document
    lat, lng = somewhere()
    cleaner = await make_cleaner(api, make_account, None, area=square(lat, lng), approve=False)
    assert upload_document(api, cleaner, pdf_bytes(), name="id.pdf").status_code == 201
    client = make_account(role="client")
    assert search(api, client, lat=lat, lng=lng)["data"] == []

    # when staff sign in, see the dashboard, find the cleaner in the verification queue and approve
    await sign_in(page, staff)
    assert "Bookings made today" in await page.content()
    await screenshot(page, "dashboard")
    await page.goto("/admin/verification-queue/list")
    assert cleaner.email in await page.content()
    await screenshot(page, "verification-queue-list")
    await page.goto(f"/admin/verification-queue/detail?pk={cleaner.id}")
    status = await run_row_action(page, "approve")

    # then the cleaner is verified and clients searching that place find them
    assert status == 200
    assert (await CleanerProfile.get(user_id=cleaner.id)).verification_status == "approved"
    assert [i["cleaner_id"] for i in search(api, client, lat=lat, lng=lng)["data"]] == [cleaner.id]
    # and staff find them by e-mail in the users' search
    await page.goto("/admin/user/list")
    await page.fill("input[name=q]", cleaner.email)
    await page.press("input[name=q]", "Enter")
    await page.wait_for_load_state("networkidle")
    assert cleaner.email in await page.content()
    await screenshot(page, "user-search")


async def test_staff_refund_part_of_a_completed_booking(page: Page, staff: Person, settings: Settings,
                                                        stripe_fake: StripeFake):
    # given a paid booking, completed and captured through Stripe (the local fake)
    paid = settings.model_copy(update={"stripe_api_key": API_KEY, "stripe_api_base": stripe_fake.url,
                                       "stripe_webhook_secret": WEBHOOK_SECRET})
    booking, _, cleaner = await in_progress(paid, stripe_fake)
    booking = await bookings.complete_booking(booking.id, actor=cleaner, settings=paid)
    assert booking.payment_status == "captured" and booking.captured_minor > 1000

    # when staff open the booking and refund 1000 with a reason
    await sign_in(page, staff)
    await page.goto(f"/admin/booking/detail?pk={booking.id}")
    status = await run_row_action(page, "refund", form={"amount_minor": "1000",
                                                         "reason": "oven left half done"})

    # then Stripe refunded that much and the booking says so
    assert status == 200
    assert (await Booking.get(id=booking.id)).refunded_minor == 1000
    assert [c for c in stripe_fake.calls("/v1/refunds")], "no refund reached Stripe"


async def test_staff_retry_a_dead_job(page: Page, staff: Person, js: JetStreamContext):
    # given a job the e-mail worker dead-lettered (its streams exist, as workers make them)
    job = await dead_job()

    # when staff open it in the dead jobs list and retry it
    await sign_in(page, staff)
    await page.goto(f"/admin/failed-job/list?q={job.type}")
    assert "SMTPServerDisconnected" in await page.content()
    await screenshot(page, "dead-jobs-list")
    await page.goto(f"/admin/failed-job/detail?pk={job.id}")
    status = await run_row_action(page, "retry")

    # then it is marked retried by them, in the audit trail too
    assert status == 200
    assert (await FailedJob.get(id=job.id)).resolution == "retried"
    assert await AuditLog.filter(action="failed_job.retried", entity_id=str(job.id),
                                 actor_id=staff.user.id).exists()


async def test_a_client_account_is_refused_at_the_door(page: Page, make_person: MakePerson):
    # given a client of the marketplace (not staff)
    client = await make_person(role="client", name="Carl Client")

    # when they sign in to the dashboard with their correct password
    await sign_in(page, client)

    # then they are told it is for staff, and any admin page sends them back to sign in
    assert "This dashboard is for Spotless staff" in await page.content()
    await page.goto("/admin/user/list")
    assert page.url.split("?")[0].endswith("/admin/login")


async def test_a_form_posted_without_its_security_token_is_refused(page: Page, staff: Person):
    # given staff on the form for a new help page
    await sign_in(page, staff)
    await page.goto("/admin/content-page/create")
    await page.fill("input[name=slug]", "forged-page")
    await page.fill("input[name=title]", "Forged")

    # when the form is submitted without its hidden token (as a forged cross-site form would be)
    await page.evaluate("document.querySelectorAll('input[name=csrftoken]').forEach(e => e.remove())")
    async with page.expect_navigation() as navigation:
        await page.evaluate("document.querySelector('form input[name=slug]').form.submit()")
    response = await navigation.value

    # then it is refused with the reason, and no page was made
    assert response is not None and response.status == 403
    assert "security token" in await page.content()
    from storage.models import ContentPage

    assert not await ContentPage.filter(slug="forged-page").exists()
