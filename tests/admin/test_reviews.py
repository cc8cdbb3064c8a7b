"""Staff moderating reviews in the dashboard: hide one (it leaves the cleaner's page and rating),
restore it, one at a time or a selection, every change audited."""

from __future__ import annotations

from core.settings import Settings
from storage import bookings, reviews
from storage.models import AuditLog, CleanerProfile, Review
from tests.admin.conftest import Dashboard, Person
from tests.storage.test_bookings import (
    bookable_cleaner,
    complete_as_cleaner,
    make_user,
    request_for,
    starting_soon,
)


async def reviewed(settings: Settings, cleaner=None, *, rating: int) -> Review:
    """A completed booking of a fresh client with `cleaner`, reviewed through the review action
    (each starts soon: a completed booking no longer holds the cleaner's time)."""
    cleaner = cleaner or await bookable_cleaner(settings)
    client = await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, starting_soon()))
    await complete_as_cleaner(booking.id, cleaner, settings)
    return await reviews.review_booking(booking.id, actor=client, rating=rating, text=f"{rating} stars",
                                        settings=settings)


async def rating_of(cleaner_id) -> tuple[float, int]:
    profile = await CleanerProfile.get(user_id=cleaner_id)
    return float(profile.rating_avg), profile.rating_count


async def test_staff_hide_a_review_with_a_reason_and_restore_it(dashboard: Dashboard, staff: Person,
                                                                settings: Settings):
    # given a cleaner with a 1-star and a 5-star review
    low = await reviewed(settings, rating=1)
    cleaner = await low.cleaner
    high = await reviewed(settings, cleaner, rating=5)
    assert await rating_of(cleaner.id) == (3.0, 2)

    # when staff hide the 1-star review without a reason, then with one
    refused = await dashboard.row_action("review", "hide", str(low.id), form={"reason": ""})
    hidden = await dashboard.row_action("review", "hide", str(low.id), form={"reason": "names the client's flat"})

    # then the first is refused with the rule's message; the second hides it and it leaves the rating
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"field": "reason", "message": "say why"}]
    assert hidden.status_code == 200, hidden.text
    row = await Review.get(id=low.id)
    assert row.hidden_at is not None and row.hidden_reason == "names the client's flat"
    assert await rating_of(cleaner.id) == (5.0, 1)
    audit = await AuditLog.get(entity_type="review", entity_id=str(low.id), action="review.hidden")
    assert str(audit.actor_id) == staff.id and audit.after["hidden_reason"] == "names the client's flat"
    # and the list shows both, the detail page offers restore instead of hide
    page = await dashboard.client.get("/admin/review/list", params={"page_size": 100})
    assert page.status_code == 200 and str(low.id) in page.text and str(high.id) in page.text
    detail = await dashboard.client.get("/admin/review/detail", params={"pk": str(low.id)})
    assert 'data-sa-name="restore"' in detail.text and 'data-sa-name="hide"' not in detail.text

    # when staff restore it
    restored = await dashboard.row_action("review", "restore", str(low.id))
    # then it counts again, and that is audited too
    assert restored.status_code == 200, restored.text
    assert (await Review.get(id=low.id)).hidden_at is None
    assert await rating_of(cleaner.id) == (3.0, 2)
    assert await AuditLog.filter(entity_id=str(low.id), action="review.restored").count() == 1


async def test_staff_hide_a_selection_and_reviews_cannot_be_written_from_the_dashboard(
        dashboard: Dashboard, settings: Settings):
    # given a cleaner with three reviews
    first = await reviewed(settings, rating=2)
    cleaner = await first.cleaner
    others = [await reviewed(settings, cleaner, rating=r) for r in (4, 5)]

    # when staff hide the first two together
    response = await dashboard.batch_action("review", "hide", [str(first.id), str(others[0].id)],
                                            form={"reason": "spam"})

    # then only the third counts
    assert response.status_code == 200, response.text
    assert await rating_of(cleaner.id) == (5.0, 1)
    # and reviews cannot be created or edited here: their words are the client's
    edit = await dashboard.client.get("/admin/review/edit", params={"pk": str(first.id)})
    create = await dashboard.client.get("/admin/review/create")
    assert edit.status_code == create.status_code == 403


async def test_a_non_staff_account_cannot_moderate(browser: Dashboard, make_person, settings: Settings):
    # given a review, and its cleaner trying the dashboard with their own password
    review = await reviewed(settings, rating=1)
    cleaner = await make_person(role="cleaner")
    signed_in = await browser.log_in(cleaner.email, cleaner.password)
    # when they send the hide action anyway (with the page's CSRF token)
    response = await browser.row_action("review", "hide", str(review.id), form={"reason": "I do not like it"})
    # then sign-in was refused, the action too, and the review is untouched
    assert signed_in.status_code == 400
    assert response.status_code == 303 and "/admin/login" in response.headers["location"]
    assert (await Review.get(id=review.id)).hidden_at is None
