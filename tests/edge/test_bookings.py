"""Bookings over HTTP as the apps use them: quote, book, list, read, move; no double booking
under fifty simultaneous requests; bad input is a 422 naming the field, never a 500."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from core.clock import utcnow
from storage.models import AuditLog, Booking, OutboxEvent, User
from tests.edge.test_access import make_admin
from tests.edge.test_supply import assert_problem
from tests.storage.test_bookings import make_bookable, starting_soon, tomorrow_at


async def bookable(make_account, settings, **kwargs):
    """A cleaner account (with a token) that is approved, offers 'standard' and works all week."""
    account = make_account(role="cleaner")
    await make_bookable(await User.get(id=account.id), settings, **kwargs)
    return account


def booking_body(cleaner, when, **overrides):
    return {"cleaner_id": cleaner.id, "service": "standard", "start": when.isoformat(), "hours": 2,
            "address": "221B Baker Street, London", "lat": 51.523767, "lng": -0.158555,
            "notes": "key under the mat", **overrides}


async def test_a_client_books_and_the_cleaner_takes_it_from_accept_to_complete(api, db, settings, make_account):
    # given an approved cleaner at £20/h and a client
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    # when the client asks for a quote, then books
    quote = api.post("/api/v1/bookings/quote", headers=client.auth,
                     json={"cleaner_id": cleaner.id, "service": "standard", "hours": "2.5"})
    assert quote.status_code == 200, quote.text
    assert quote.json()["quote"]["total"] == {"amount_minor": 6000, "currency": "GBP"}
    assert quote.json()["quote"]["hours"] == 2.5  # a JSON number, as it was sent
    made = api.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, starting_soon(), hours=2.5))
    # then it is requested at the quoted price; the client does not see the cleaner's take
    assert made.status_code == 201, made.text
    booking = made.json()["booking"]
    assert booking["state"] == "requested" and booking["price"]["total"]["amount_minor"] == 6000
    assert "cleaner_payout" not in booking["price"] and "navigation" not in booking
    # and what has not happened yet is null, not left out: hours are numbers
    assert (booking["cancellation"], booking["price"]["final"], booking["accepted_at"]) == (None, None, None)
    assert (booking["hours"], booking["price"]["quoted"]["hours"]) == (2.5, 2.5)
    # and the cleaner sees where to go, with links their maps app opens
    seen = api.get(f"/api/v1/bookings/{booking['id']}", headers=cleaner.auth).json()["booking"]
    assert (seen["address"], seen["city"]) == ("221B Baker Street, London", "London")
    assert seen["location"] == {"lat": 51.523767, "lng": -0.158555}
    assert seen["navigation"]["geo"].startswith("geo:51.523767,-0.158555")
    assert seen["navigation"]["google_maps"].startswith("https://www.google.com/maps/dir/?api=1&destination=")
    assert seen["price"]["cleaner_payout"]["amount_minor"] == 5000 - 750
    # when the cleaner moves it through the day (it starts within the hour: they may set off)
    for move in ("accept", "on-the-way", "start", "complete"):
        response = api.post(f"/api/v1/bookings/{booking['id']}/{move}", headers=cleaner.auth)
        assert response.status_code == 200, response.text
    # then it is completed, with the whole timeline
    done = api.get(f"/api/v1/bookings/{booking['id']}", headers=client.auth).json()["booking"]
    assert done["state"] == "completed" and done["completed_at"] is not None
    assert [step["to"] for step in done["timeline"]] == ["requested", "accepted", "on_the_way", "in_progress",
                                                         "completed"]
    # and the client may dispute it, with a reason
    assert_problem(api.post(f"/api/v1/bookings/{booking['id']}/dispute", headers=client.auth, json={}), 422,
                   field="reason")
    disputed = api.post(f"/api/v1/bookings/{booking['id']}/dispute", headers=client.auth,
                        json={"reason": "oven untouched"})
    assert disputed.status_code == 200 and disputed.json()["booking"]["state"] == "disputed"


async def test_strangers_get_404_and_the_wrong_party_403(api, db, settings, make_account):
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    booking = api.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, tomorrow_at(9))).json()
    stranger = make_account(role="cleaner")
    assert_problem(api.get(f"/api/v1/bookings/{booking['booking']['id']}", headers=stranger.auth), 404)
    assert_problem(api.post(f"/api/v1/bookings/{booking['booking']['id']}/accept", headers=stranger.auth), 404)
    assert_problem(api.post(f"/api/v1/bookings/{booking['booking']['id']}/accept", headers=client.auth), 403,
                   code="not_your_move")
    assert_problem(api.post(f"/api/v1/bookings/{booking['booking']['id']}/start", headers=cleaner.auth), 409,
                   code="illegal_transition")
    assert_problem(api.post(f"/api/v1/bookings/{booking['booking']['id']}/teleport", headers=cleaner.auth), 404)
    assert_problem(api.get("/api/v1/bookings/not-a-uuid", headers=client.auth), 422, field="id")
    assert_problem(api.get(f"/api/v1/bookings/{booking['booking']['id']}"), 401)


async def test_a_cleaner_cannot_set_off_days_early_and_is_told_from_when(api, db, settings, make_account):
    # given a booking for two days ahead, accepted by its cleaner
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    staff, _ = await make_admin(api, settings)
    booking = api.post("/api/v1/bookings", headers=client.auth,
                       json=booking_body(cleaner, tomorrow_at(9, days=2))).json()["booking"]
    assert api.post(f"/api/v1/bookings/{booking['id']}/accept", headers=cleaner.auth).status_code == 200
    events_before = await OutboxEvent.filter(payload__contains={"booking_id": booking["id"]}).count()

    # when the cleaner marks it on the way now, or starts it, and staff try to do it for them
    on_the_way = api.post(f"/api/v1/bookings/{booking['id']}/on-the-way", headers=cleaner.auth)
    start = api.post(f"/api/v1/bookings/{booking['id']}/start", headers=cleaner.auth)
    by_staff = api.post(f"/api/v1/bookings/{booking['id']}/on-the-way", headers=staff)

    # then setting off is too early, and the problem says from when: three hours before the start
    problem = assert_problem(on_the_way, 409, code="too_early")
    allowed_from = (tomorrow_at(9, days=2) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert problem["detail"] == (f"too early: a cleaner may set off for this booking from {allowed_from}, "
                                 "3 hours before its start")
    assert problem["allowed_from"] == allowed_from  # for the app to show, without reading the text
    # and starting skips a step, and staff may not make the cleaner's move at all
    assert_problem(start, 409, code="illegal_transition")
    assert_problem(by_staff, 403, code="not_your_move")
    # and the booking is still accepted, with nothing written or announced
    seen = api.get(f"/api/v1/bookings/{booking['id']}", headers=client.auth).json()["booking"]
    assert (seen["state"], seen["on_the_way_at"]) == ("accepted", None)
    assert [step["to"] for step in seen["timeline"]] == ["requested", "accepted"]
    assert (await Booking.get(id=booking["id"])).state == "accepted"
    assert await OutboxEvent.filter(payload__contains={"booking_id": booking["id"]}).count() == events_before
    assert not await AuditLog.filter(entity_id=booking["id"], action="booking.on_the_way").exists()


async def test_cancelling_says_who_and_why_and_the_fee(api, db, settings, make_account):
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    booking = api.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, tomorrow_at(9, days=4)))
    booking_id = booking.json()["booking"]["id"]
    assert_problem(api.post(f"/api/v1/bookings/{booking_id}/cancel", headers=client.auth), 422, field="reason")
    response = api.post(f"/api/v1/bookings/{booking_id}/cancel", headers=client.auth, json={"reason": "moving"})
    assert response.status_code == 200, response.text
    assert response.json()["booking"]["cancellation"] == {
        "by": "client", "reason": "moving", "late": False, "fee": {"amount_minor": 0, "currency": "GBP"}}
    assert_problem(api.post(f"/api/v1/bookings/{booking_id}/cancel", headers=client.auth, json={"reason": "x"}),
                   409, code="illegal_transition")


async def test_listing_filters_by_state_and_pages_with_a_cursor(api, db, settings, make_account):
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    ids = [api.post("/api/v1/bookings", headers=client.auth,
                    json=booking_body(cleaner, tomorrow_at(6 + 3 * i))).json()["booking"]["id"] for i in range(3)]
    api.post(f"/api/v1/bookings/{ids[1]}/decline", headers=cleaner.auth, json={"reason": "booked elsewhere"})
    first = api.get("/api/v1/bookings", headers=client.auth, params={"limit": 2}).json()
    second = api.get("/api/v1/bookings", headers=client.auth, params={"limit": 2, "cursor": first["next_cursor"]})
    assert [b["id"] for b in first["data"] + second.json()["data"]] == list(reversed(ids))
    assert second.json()["next_cursor"] is None
    declined = api.get("/api/v1/bookings", headers=cleaner.auth, params={"state": "declined"}).json()
    assert [b["id"] for b in declined["data"]] == [ids[1]]
    assert_problem(api.get("/api/v1/bookings", headers=client.auth, params={"state": "nope"}), 422, field="state")
    assert_problem(api.get("/api/v1/bookings", headers=client.auth, params={"cursor": "!!"}), 422, field="cursor")


@pytest.mark.parametrize("override, field", [
    ({"cleaner_id": "nope"}, "cleaner_id"),
    ({"cleaner_id": "00000000-0000-7000-8000-000000000000"}, "cleaner_id"),
    ({"service": "moon"}, "service"),
    ({"hours": 0}, "hours"),
    ({"hours": 1.1}, "hours"),
    ({"hours": 1}, "hours"),  # below the service's two-hour minimum
    ({"hours": None}, "hours"),
    ({"start": "tomorrow"}, "start"),
    ({"start": "2030-01-01T09:00:00"}, "start"),
    ({"start": "2020-01-01T09:00:00+00:00"}, "start"),
    ({"address": "   "}, "address"),
    ({"lat": 91}, "lat"),
    ({"lng": None}, "lng"),
    ({"notes": 5}, "notes"),
    ({"notes": "a\x00b"}, "notes"),
    ({"address": "1 Nul\x00 Road"}, "address"),
    ({"service": "stand\x00ard"}, "service"),
    ({"payment_method_id": 7}, "payment_method_id"),
    ({"surprise": True}, "surprise"),
])
async def test_bad_bookings_are_422_naming_the_field(api, db, settings, make_account, override, field):
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    response = api.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, tomorrow_at(9), **override))
    assert_problem(response, 422, field=field)


async def test_a_cleaner_is_booked_only_at_an_address_in_their_service_area(api, db, settings, make_account):
    # given a cleaner serving central London and a client
    cleaner, client = await bookable(make_account, settings), make_account(role="client")

    def book(**where):
        return api.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, tomorrow_at(9), **where))

    # when the client books them in Paris, or without saying where the address is
    # then both are refused, nothing is written, and the problem says why
    assert_problem(book(address="1 Rue de Rivoli, Paris", lat=48.8566, lng=2.3522), 422,
                   code="outside_service_area", field="lat")
    assert_problem(book(lat=None, lng=None), 422, field="lat")
    assert api.get("/api/v1/bookings", headers=client.auth).json()["data"] == []
    # and a point on the area's very border counts as served (as search counts it)
    assert book(lat=51.5, lng=-0.5).status_code == 201
    # and once the cleaner has no area at all, nobody can book them
    assert api.delete("/api/v1/cleaner/service-area", headers=cleaner.auth).status_code in (200, 204)
    assert_problem(api.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, tomorrow_at(15))),
                   422, code="outside_service_area")


async def test_only_clients_book(api, db, settings, make_account):
    cleaner = await bookable(make_account, settings)
    assert_problem(api.post("/api/v1/bookings", headers=cleaner.auth, json=booking_body(cleaner, tomorrow_at(9))),
                   403)


async def test_fifty_simultaneous_requests_for_one_cleaner_book_exactly_once(api, edge, db, settings, make_account):
    # given one cleaner and fifty clients wanting overlapping windows around 09:00
    cleaner = await bookable(make_account, settings, buffer_minutes=30)
    clients = [make_account(role="client") for _ in range(50)]
    base = tomorrow_at(9, days=2)
    bodies = [booking_body(cleaner, base + timedelta(minutes=15 * (i % 8))) for i in range(50)]
    # when they all press "book" at once
    async with httpx.AsyncClient(base_url=edge.url, timeout=60,
                                 limits=httpx.Limits(max_connections=50)) as client:
        responses = await asyncio.gather(*[client.post("/api/v1/bookings", headers=c.auth, json=b)
                                           for c, b in zip(clients, bodies, strict=True)])
    # then exactly one is booked and every other is told the slot is taken
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 49, [r.text for r in responses if r.status_code not in (201, 409)]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"slot_taken"}
    listed = api.get("/api/v1/bookings", headers=cleaner.auth).json()["data"]
    assert len(listed) == 1
    assert utcnow() < base
