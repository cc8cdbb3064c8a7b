"""Reviews over HTTP: a client rates a completed booking once, its cleaner replies once, anyone
reads a cleaner's visible reviews, and the cleaner's rating (what search ranks by) follows."""

from __future__ import annotations

import asyncio
from uuid import UUID

from storage import reviews
from storage.models import CleanerProfile, OutboxEvent, User
from tests.edge.test_bookings import bookable, booking_body
from tests.edge.test_search import search, somewhere, square
from tests.edge.test_supply import assert_problem
from tests.storage.test_bookings import make_user, starting_soon, tomorrow_at


def completed(api, client, cleaner, **where) -> str:
    """A booking of `client` with `cleaner` (at `where`'s lat and lng, when given), starting soon,
    taken from request to completion over the API (once completed it no longer holds the cleaner's
    time, so the cleaner's next one may start soon too)."""
    made = api.post("/api/v1/bookings", headers=client.auth,
                    json=booking_body(cleaner, starting_soon(), **where))
    assert made.status_code == 201, made.text
    booking_id = made.json()["booking"]["id"]
    for move in ("accept", "on-the-way", "start", "complete"):
        assert api.post(f"/api/v1/bookings/{booking_id}/{move}", headers=cleaner.auth).status_code == 200
    return booking_id


def review(api, who, booking_id, **body):
    return api.post(f"/api/v1/bookings/{booking_id}/review", headers=who.auth, json=body)


def reply(api, who, booking_id, text):
    return api.post(f"/api/v1/bookings/{booking_id}/review/reply", headers=who.auth, json={"text": text})


async def rating_of(cleaner) -> tuple[float, int]:
    profile = await CleanerProfile.get(user_id=cleaner.id)
    return float(profile.rating_avg), profile.rating_count


async def test_a_client_reviews_once_the_cleaner_replies_once_and_everyone_reads_it(api, db, settings,
                                                                                   make_account):
    # given a completed booking
    cleaner, client = await bookable(make_account, settings), make_account(role="client", name="Ada Lovelace")
    booking_id = completed(api, client, cleaner)
    # when the client rates it 4 with a text
    posted = review(api, client, booking_id, rating=4, text="  Spotless kitchen, late by 10 minutes. ")
    # then the review is stored, the cleaner's rating counts it and the cleaner will hear of it
    assert posted.status_code == 201, posted.text
    body = posted.json()["review"]
    assert (body["rating"], body["text"], body["reply"], body["hidden"]) == (
        4, "Spotless kitchen, late by 10 minutes.", None, False)
    assert await rating_of(cleaner) == (4.0, 1)
    profile = api.get("/api/v1/cleaner/profile", headers=cleaner.auth).json()["profile"]
    assert profile["rating"] == {"average": 4.0, "count": 1}
    assert await OutboxEvent.filter(type="review.posted", payload__contains={"booking_id": booking_id}).exists()
    # and a second review of the same booking is refused, the first unchanged
    assert_problem(review(api, client, booking_id, rating=1, text="changed my mind"), 409, code="already_reviewed")
    assert await rating_of(cleaner) == (4.0, 1)

    # when the cleaner replies, then tries again
    answered = reply(api, cleaner, booking_id, "Sorry about the traffic!")
    assert answered.status_code == 200, answered.text
    assert answered.json()["review"]["reply"]["text"] == "Sorry about the traffic!"
    assert_problem(reply(api, cleaner, booking_id, "And another thing"), 409, code="already_replied")

    # then anyone reads it on the cleaner's page, author by first name, without the booking
    page = api.get(f"/api/v1/cleaners/{cleaner.id}/reviews")
    assert page.status_code == 200, page.text
    assert page.json()["next_cursor"] is None
    [shown] = page.json()["data"]
    assert (shown["rating"], shown["author"], shown["reply"]["text"]) == (4, "Ada", "Sorry about the traffic!")
    assert "booking_id" not in shown and "hidden" not in shown
    # and both parties read it on the booking
    for who in (client, cleaner):
        mine = api.get(f"/api/v1/bookings/{booking_id}/review", headers=who.auth)
        assert mine.status_code == 200 and mine.json()["review"]["id"] == body["id"]


async def test_only_the_client_of_a_completed_booking_reviews_and_only_its_cleaner_replies(api, db, settings,
                                                                                          make_account):
    # given a completed booking, a booking still requested, and a stranger
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    done = completed(api, client, cleaner)
    pending = api.post("/api/v1/bookings", headers=client.auth,
                       json=booking_body(cleaner, tomorrow_at(15, days=3))).json()["booking"]["id"]
    stranger = make_account(role="client")
    # when the wrong people review, or the right one too early
    assert_problem(review(api, client, pending, rating=5), 409, code="booking_not_completed")
    assert_problem(review(api, cleaner, done, rating=5), 403)
    assert_problem(review(api, stranger, done, rating=5), 404)
    assert_problem(review(api, client, "00000000-0000-0000-0000-000000000000", rating=5), 404)
    assert_problem(review(api, client, "not-a-uuid", rating=5), 422, field="id")
    assert_problem(api.post(f"/api/v1/bookings/{done}/review", json={"rating": 5}), 401)
    # and replies come before a review, from the client, or from a stranger
    assert_problem(reply(api, cleaner, done, "thanks"), 404)
    assert_problem(api.get(f"/api/v1/bookings/{done}/review", headers=stranger.auth), 404)
    assert review(api, client, done, rating=5).status_code == 201
    assert_problem(reply(api, client, done, "I reply to myself"), 403)
    assert_problem(reply(api, stranger, done, "me too"), 404)
    assert_problem(reply(api, cleaner, done, "   "), 422, field="text")
    # then the one review stands, unanswered
    assert await rating_of(cleaner) == (5.0, 1)
    assert api.get(f"/api/v1/bookings/{done}/review", headers=client.auth).json()["review"]["reply"] is None


async def test_malformed_reviews_are_refused_and_nothing_is_written(api, db, settings, make_account):
    # given a completed booking
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    booking_id = completed(api, client, cleaner)
    # when the client sends bad ratings, texts or shapes
    for body, field in [({"rating": 0}, "rating"), ({"rating": 6}, "rating"), ({"rating": 4.5}, "rating"),
                        ({"rating": "5"}, "rating"), ({"rating": True}, "rating"), ({}, "rating"),
                        ({"rating": 5, "text": "x" * (settings.review_max_chars + 1)}, "text"),
                        ({"rating": 5, "text": "nul \x00 byte"}, "text"), ({"rating": 5, "text": 7}, "text"),
                        ({"rating": 5, "stars": 5}, "stars")]:
        assert_problem(review(api, client, booking_id, **body), 422, field=field)
    assert_problem(api.post(f"/api/v1/bookings/{booking_id}/review", headers={**client.auth,
                   "content-type": "application/json"}, content=b"{not json"), 400)
    assert_problem(api.post(f"/api/v1/bookings/{booking_id}/review", headers=client.auth, json=[5]), 422)
    # then no review exists and the rating is untouched
    assert_problem(api.get(f"/api/v1/bookings/{booking_id}/review", headers=client.auth), 404)
    assert await rating_of(cleaner) == (0.0, 0)


async def test_a_cleaners_reviews_page_newest_first_and_concurrent_reviews_all_count(api, db, settings,
                                                                                   make_account):
    # given a cleaner with three completed bookings by three clients
    cleaner = await bookable(make_account, settings)
    clients = [make_account(role="client") for _ in range(3)]
    booking_ids = [completed(api, c, cleaner) for c in clients]
    # when the three clients review at the same moment
    users = [await User.get(id=c.id) for c in clients]
    await asyncio.gather(*(reviews.review_booking(UUID(b), actor=u, rating=r, text=f"{r} stars", settings=settings)
                           for b, u, r in zip(booking_ids, users, (5, 4, 4), strict=True)))
    # then every one counts in the rating
    assert await rating_of(cleaner) == (4.33, 3)
    # and the public list pages through them, newest first, with a cursor
    first = api.get(f"/api/v1/cleaners/{cleaner.id}/reviews", params={"limit": 2}).json()
    second = api.get(f"/api/v1/cleaners/{cleaner.id}/reviews",
                     params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(first["data"]) == 2 and len(second["data"]) == 1 and second["next_cursor"] is None
    seen = [r["id"] for r in first["data"] + second["data"]]
    assert len(set(seen)) == 3
    stamps = [r["created_at"] for r in first["data"] + second["data"]]
    assert stamps == sorted(stamps, reverse=True)
    # and bad paging or an unknown cleaner are problems, not pages
    assert_problem(api.get(f"/api/v1/cleaners/{cleaner.id}/reviews", params={"cursor": "garbage!"}), 422,
                   field="cursor")
    assert_problem(api.get(f"/api/v1/cleaners/{cleaner.id}/reviews", params={"limit": 0}), 422, field="limit")
    assert_problem(api.get("/api/v1/cleaners/00000000-0000-0000-0000-000000000000/reviews"), 404)
    assert_problem(api.get("/api/v1/cleaners/nope/reviews"), 422, field="id")


async def test_ratings_rank_search_and_a_hidden_review_leaves_the_rating_and_the_page(api, db, settings,
                                                                                     make_account):
    # given two cleaners serving the same place, the nearer one rated 4, the farther one rated 5
    # (one review each: search ranks by the average pulled towards the 4.0 prior, so 4.17 and 4.0)
    lat, lng = somewhere()
    near, far = await bookable(make_account, settings), await bookable(make_account, settings)
    for cleaner, area in ((near, square(lat, lng)), (far, square(lat + 0.04, lng, 0.08))):
        assert api.put("/api/v1/cleaner/service-area", headers=cleaner.auth, json=area).status_code == 200
    client = make_account(role="client")
    near_booking = completed(api, client, near, lat=lat, lng=lng)
    far_booking = completed(api, client, far, lat=lat, lng=lng)
    assert review(api, client, near_booking, rating=4).status_code == 201
    far_review = review(api, client, far_booking, rating=5, text="rude words").json()["review"]
    # when a client searches there
    ranked = search(api, client, lat=lat, lng=lng)
    # then the better rated one comes first, with its rating
    assert [(i["cleaner_id"], i["rating_avg"], i["rating_count"]) for i in ranked["data"]] == [
        (far.id, 5.0, 1), (near.id, 4.0, 1)]

    # when staff hide the 5-star review
    staff = await make_user(settings, "admin")
    await reviews.set_review_hidden(UUID(far_review["id"]), actor=staff, hidden=True, reason="abusive")
    # then it leaves the cleaner's page and rating, and search ranks by what is left (an unrated
    # cleaner sits at the prior, level with the nearer one, who wins on distance)
    assert api.get(f"/api/v1/cleaners/{far.id}/reviews").json()["data"] == []
    assert await rating_of(far) == (0.0, 0)
    unrated = search(api, client, lat=lat, lng=lng)["data"]
    assert [(i["cleaner_id"], i["rating_avg"], i["rating_count"]) for i in unrated] == [
        (near.id, 4.0, 1), (far.id, None, 0)]
    # and restoring it brings it back
    await reviews.set_review_hidden(UUID(far_review["id"]), actor=staff, hidden=False)
    assert await rating_of(far) == (5.0, 1)
    assert [r["id"] for r in api.get(f"/api/v1/cleaners/{far.id}/reviews").json()["data"]] == [far_review["id"]]
