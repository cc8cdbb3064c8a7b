"""Clients search for cleaners over HTTP: who serves here, who is free then, at what price."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise import connections

from core.clock import utcnow
from core.ids import new_id
from storage.models import CleanerProfile
from tests.core.test_supply import pdf_bytes
from tests.edge.test_bookings import booking_body
from tests.edge.test_supply import assert_problem, make_staff, upload_document
from tests.storage.test_bookings import starting_soon


async def sql(statement: str, *params: object) -> None:
    await connections.get("default").execute_query(statement, list(params))


async def book(client, cleaner, state: str, starts_at: datetime, ends_at: datetime) -> None:
    # The bookings issue brings the booking actions; until then a row is what holds time.
    # A cancelled row says by whom, as every real cancellation does: staff lists (and the fuzzer
    # checking them against the documented shape) read these rows too.
    cancelled_by, cancelled_at = ("client", utcnow()) if state == "cancelled" else (None, None)
    await sql("INSERT INTO bookings (id, client_id, cleaner_id, service_id, state, starts_at, ends_at, "
              "cancelled_by, cancelled_at) VALUES ($1, $2, $3, 'standard', $4, $5, $6, $7, $8)",
              new_id(), client.id, cleaner.id, state, starts_at, ends_at, cancelled_by, cancelled_at)


def square(lat: float, lng: float, half_deg: float = 0.05) -> dict:
    ring = [[lng - half_deg, lat - half_deg], [lng + half_deg, lat - half_deg], [lng + half_deg, lat + half_deg],
            [lng - half_deg, lat + half_deg], [lng - half_deg, lat - half_deg]]
    return {"type": "Polygon", "coordinates": [ring]}


def somewhere() -> tuple[float, float]:
    """A place of this test's own, so other tests' cleaners never show up in its results."""
    rng = random.Random()
    return round(rng.uniform(45, 60), 3), round(rng.uniform(-120, -70), 3)


async def make_cleaner(api, make_account, staff, *, area, services=(("standard", 2000),), approve=True,
                       rating=None):
    cleaner = make_account(role="cleaner")
    profile = api.put("/api/v1/cleaner/profile", headers=cleaner.auth, json={
        "travel_buffer_minutes": 30,
        "services": [{"service_id": s, "hourly_rate_minor": r} for s, r in services]})
    assert profile.status_code == 200, profile.text
    # The schedule is written as PUT /cleaner/availability stores it (that endpoint is another
    # piece of this issue; these rows are exactly its output for every day 08:00-18:00).
    await sql("INSERT INTO availability_rules (cleaner_id, weekday, start_minute, end_minute) "
              "SELECT $1, d, 480, 1080 FROM generate_series(0, 6) AS d", cleaner.id)
    assert api.put("/api/v1/cleaner/service-area", headers=cleaner.auth, json=area).status_code == 200
    if approve:
        assert upload_document(api, cleaner, pdf_bytes(), name="id.pdf").status_code == 201
        decided = api.post(f"/api/v1/admin/cleaners/{cleaner.id}/verification", headers=staff,
                           json={"decision": "approve"})
        assert decided.status_code == 200, decided.text
    if rating is not None:
        # ratings come from reviews (a later issue); set the average the way that job will
        await CleanerProfile.filter(user_id=cleaner.id).update(rating_avg=rating, rating_count=3)
    return cleaner


def next_monday_at(hour: int) -> datetime:
    today = date.today()
    monday = today + timedelta(days=7 - today.weekday())
    return datetime(monday.year, monday.month, monday.day, hour, tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)


def search(api, who, **params):
    response = api.get("/api/v1/cleaners/search", headers=who.auth, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_search_finds_verified_cleaners_who_serve_the_point_ranked_and_priced(api, db, settings, make_account):
    # given, around one place: two approved cleaners (one rated higher), one not approved, one
    # who does not offer the service, and one whose area is elsewhere
    lat, lng = somewhere()
    staff = await make_staff(api, settings)
    near = await make_cleaner(api, make_account, staff, area=square(lat, lng), rating=4.2)
    best = await make_cleaner(api, make_account, staff, area=square(lat + 0.04, lng, 0.08),
                              services=(("standard", 2150), ("deep", 3000)), rating=4.9)
    await make_cleaner(api, make_account, staff, area=square(lat, lng), approve=False)
    deep_only = await make_cleaner(api, make_account, staff, area=square(lat, lng), services=(("deep", 2600),))
    await make_cleaner(api, make_account, staff, area=square(lat + 1, lng))
    client = make_account(role="client")

    # when a client asks who serves the point
    anyone = search(api, client, lat=lat, lng=lng)
    # then approved cleaners covering it come, best rated first
    assert [i["cleaner_id"] for i in anyone["data"]] == [best.id, near.id, deep_only.id]
    assert anyone["data"][1]["distance_m"] < anyone["data"][0]["distance_m"]

    # when they ask for a standard clean of 2.5 hours next Monday at 10:00
    start = next_monday_at(10)
    window = search(api, client, lat=lat, lng=lng, service="standard", start=start.isoformat(), hours="2.5")
    # then only those who offer it come, each with the price for the window
    assert [(i["cleaner_id"], i["price"]) for i in window["data"]] == [
        (best.id, {"amount_minor": 5375, "currency": "GBP", "hours": 2.5}),
        (near.id, {"amount_minor": 5000, "currency": "GBP", "hours": 2.5})]

    # when the window runs past the end of their working day, nobody is free
    late = search(api, client, lat=lat, lng=lng, service="standard", start=next_monday_at(16).isoformat(), hours="3")
    assert late["data"] == []

    # when the best cleaner has a booking that ends 20 minutes before the window (travel buffer 30)
    await book(client, best, "accepted", start - timedelta(hours=2), start - timedelta(minutes=20))
    await book(client, near, "cancelled", start, start + timedelta(hours=1))
    busy = search(api, client, lat=lat, lng=lng, service="standard", start=start.isoformat(), hours="2.5")
    # then only the other one is free (a cancelled booking holds no time)
    assert [i["cleaner_id"] for i in busy["data"]] == [near.id]

    # when the client pages one at a time, the cursor walks the same order
    first = search(api, client, lat=lat, lng=lng, limit=1)
    second = search(api, client, lat=lat, lng=lng, limit=1, cursor=first["next_cursor"])
    third = search(api, client, lat=lat, lng=lng, limit=2, cursor=second["next_cursor"])
    assert [first["data"][0]["cleaner_id"], second["data"][0]["cleaner_id"]] == [best.id, near.id]
    assert [i["cleaner_id"] for i in third["data"]] == [deep_only.id] and third["next_cursor"] is None


async def test_area_changes_and_heartbeats_show_in_search_at_once(api, db, settings, make_account):
    # given an approved cleaner with an area, and a client
    lat, lng = somewhere()
    staff = await make_staff(api, settings)
    cleaner = await make_cleaner(api, make_account, staff, area=square(lat, lng))
    client = make_account(role="client")
    found = search(api, client, lat=lat, lng=lng)["data"]
    assert [(i["cleaner_id"], i["online"]) for i in found] == [(cleaner.id, False)]

    # when the cleaner's app sends a heartbeat, then they show as online
    beat = api.post("/api/v1/cleaner/presence", headers=cleaner.auth, json={"lat": lat, "lng": lng})
    assert beat.status_code == 200, beat.text
    assert search(api, client, lat=lat, lng=lng)["data"][0]["online"] is True

    # when they move the area away, the very next search no longer finds them there
    assert api.put("/api/v1/cleaner/service-area", headers=cleaner.auth,
                   json=square(lat + 0.5, lng)).status_code == 200
    assert search(api, client, lat=lat, lng=lng)["data"] == []
    assert [i["cleaner_id"] for i in search(api, client, lat=lat + 0.5, lng=lng)["data"]] == [cleaner.id]

    # when they delete it, nobody finds them anywhere
    assert api.delete("/api/v1/cleaner/service-area", headers=cleaner.auth).status_code == 204
    assert search(api, client, lat=lat + 0.5, lng=lng)["data"] == []


def test_bad_search_parameters_are_422s(api, make_account):
    client = make_account(role="client")
    for params, field in [({"lat": "91", "lng": "0"}, "lat"), ({"lat": "x", "lng": "0"}, "lat"),
                          ({"lat": "0"}, "lng"), ({"lat": "0", "lng": "nan"}, "lng"),
                          ({"lat": "0", "lng": "0", "start": "2026-01-01T10:00:00Z"}, "hours"),
                          ({"lat": "0", "lng": "0", "start": "2026-01-01T10:00:00", "hours": "2"}, "start"),
                          ({"lat": "0", "lng": "0", "start": "2026-01-01T10:00:00Z", "hours": "0.1"}, "hours"),
                          ({"lat": "0", "lng": "0", "start": "9999-12-31T23:00:00Z", "hours": "2"}, "start"),
                          ({"lat": "0", "lng": "0", "start": "0001-01-01T00:30:00+01:00", "hours": "2"}, "start"),
                          ({"lat": "0", "lng": "0", "cursor": "!!"}, "cursor"),
                          ({"lat": "0", "lng": "0", "service": "standard-clean"}, "service"),
                          ({"lat": "51.5", "lng": "-0.12", "service": "no-such-service"}, "service")]:
        response = api.get("/api/v1/cleaners/search", headers=client.auth, params=params)
        assert response.status_code == 422, (params, response.text)
        assert field in [e["field"] for e in response.json()["errors"]]
    assert api.get("/api/v1/cleaners/search", params={"lat": "0", "lng": "0"}).status_code == 401


def test_a_start_no_booking_could_have_is_refused_as_booking_refuses_it(api, make_account):
    # given a client, and starts that booking refuses: past, inside the one-hour lead, beyond the
    # 180 days of advance, and off the whole minute
    client, cleaner = make_account(role="client"), make_account(role="cleaner")
    now = utcnow().replace(second=0, microsecond=0)
    starts = {"past": now - timedelta(days=1), "inside the lead": now + timedelta(minutes=30),
              "beyond the advance": now + timedelta(days=200), "off the minute": starting_soon() + timedelta(seconds=30)}
    answers = {}
    for case, start in starts.items():
        # when the client searches for a window starting then
        answers[case] = assert_problem(api.get("/api/v1/cleaners/search", headers=client.auth, params={
            "lat": "51.5", "lng": "-0.12", "service": "standard", "start": start.isoformat(), "hours": "2"}),
            422, field="start")
        # then it is the 422 on start that booking at that start gives, word for word and code for code
        booked = api.post("/api/v1/bookings", headers=client.auth, json=booking_body(cleaner, start)).json()
        assert (answers[case]["code"], answers[case]["errors"]) == (booked["code"], booked["errors"]), case
    assert [(a["code"], a["errors"][0]["message"]) for a in answers.values()] == [
        ("too_late", "must be at least 1 hour from now"), ("too_late", "must be at least 1 hour from now"),
        ("invalid", "must be within 180 days from now"), ("invalid", "must be on a whole minute")]
    # and a start a booking could have is searched as before
    search(api, client, lat="51.5", lng="-0.12", service="standard", start=starting_soon().isoformat(), hours="2")


def test_a_heartbeat_needs_a_place_and_a_cleaner(api, make_account):
    cleaner, client = make_account(role="cleaner"), make_account(role="client")
    assert api.post("/api/v1/cleaner/presence", headers=cleaner.auth, json={"lat": 100, "lng": 0}).status_code == 422
    assert api.post("/api/v1/cleaner/presence", headers=cleaner.auth, json={"lat": "1", "lng": 0}).status_code == 422
    assert api.post("/api/v1/cleaner/presence", headers=client.auth, json={"lat": 1, "lng": 0}).status_code == 403


async def test_few_reviews_count_for_little_in_the_ranking(api, db, settings, make_account):
    # given two cleaners at the same place: one with a single 5-star review, one with 4.9 from 100
    lat, lng = somewhere()
    staff = await make_staff(api, settings)
    lucky = await make_cleaner(api, make_account, staff, area=square(lat, lng))
    proven = await make_cleaner(api, make_account, staff, area=square(lat, lng))
    await CleanerProfile.filter(user_id=lucky.id).update(rating_avg=5, rating_count=1)
    await CleanerProfile.filter(user_id=proven.id).update(rating_avg=4.9, rating_count=100)
    # when a client searches there
    found = search(api, make_account(role="client"), lat=lat, lng=lng)["data"]
    # then the proven cleaner comes first, and both show their real averages (JSON numbers) and counts
    assert [(c["cleaner_id"], c["rating_avg"], c["rating_count"]) for c in found] == [
        (proven.id, 4.9, 100), (lucky.id, 5.0, 1)]
