"""Completion photos over HTTP: the booking's cleaner uploads while at work, the images job makes
safe copies and records capture time and place, both parties list and download them, and a
service that asks for photos cannot be completed without one. Every refusal is a problem."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.aio.client import Client
from PIL import Image

from core.supply import OfferedService
from jobs.images import images_worker
from jobs.relay import relay_until_empty
from jobs.runner import connect_nats
from jobs.worker import Worker
from storage import supply
from storage.models import AuditLog, BookingEvidence, User
from tests.edge.test_bookings import bookable, booking_body
from tests.edge.test_supply import assert_problem, make_staff
from tests.jobs.test_images import photo, png_header_only
from tests.storage.test_bookings import starting_soon


def png(size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (200, 200, 200)).save(out, "PNG")
    return out.getvalue()


def upload(api, account, booking_id, data, *, name="photo.jpg", field="photo", content_type="image/jpeg"):
    return api.post(f"/api/v1/bookings/{booking_id}/evidence", headers=account.auth,
                    files={field: (name, data, content_type)})


@pytest_asyncio.fixture
async def nats_client(jetstream, db, settings) -> AsyncIterator[Client]:  # noqa: F811
    client = await connect_nats(settings, name="spotless-test-evidence")
    yield client
    await client.close()


async def run_images(nc: Client, settings) -> None:
    """Relay what is pending, then run the images worker until it is idle."""
    await relay_until_empty(nc, settings)
    await Worker(nc, settings, images_worker(settings)).run(asyncio.Event(), until_idle_s=0.5)


async def booking_in(api, make_account, settings, *, state="in_progress", service="deep"):
    """A client's booking of a cleaner who offers standard and deep cleans, starting soon (so the
    cleaner may set off), moved to `state`."""
    cleaner, client = await bookable(make_account, settings), make_account(role="client")
    await supply.update_profile(actor=await User.get(id=cleaner.id), settings=settings,
                                services=[OfferedService("standard", 2000), OfferedService("deep", 2600)])
    made = api.post("/api/v1/bookings", headers=client.auth,
                    json=booking_body(cleaner, starting_soon(), service=service, hours=4))
    assert made.status_code == 201, made.text
    booking_id = made.json()["booking"]["id"]
    moves = {"requested": [], "accepted": ["accept"], "on_the_way": ["accept", "on-the-way"],
             "in_progress": ["accept", "on-the-way", "start"]}[state]
    for move in moves:
        assert api.post(f"/api/v1/bookings/{booking_id}/{move}", headers=cleaner.auth).status_code == 200
    return cleaner, client, booking_id


async def test_a_photo_is_uploaded_processed_listed_and_downloaded_by_both_parties(
        api, db, nats_client, settings, make_account):
    # given a deep clean in progress
    cleaner, client, booking_id = await booking_in(api, make_account, settings)
    # when the cleaner uploads a phone photo (sideways, with capture time and GPS in its EXIF)
    sent = upload(api, cleaner, booking_id, photo())
    # then it is accepted and waits for the images job; no file is served yet
    assert sent.status_code == 201, sent.text
    evidence = sent.json()["evidence"]
    assert (evidence["status"], evidence["url"], evidence["thumbnails"]) == ("processing", None, {})
    original = (await BookingEvidence.get(id=evidence["id"])).storage_key
    assert (settings.file_storage_path / original).exists()
    assert_problem(api.get(f"/api/v1/bookings/{booking_id}/evidence/{evidence['id']}/file", headers=client.auth),
                   409, code="evidence_processing")
    # when the images job has run
    await run_images(nats_client, settings)
    # then both parties see it processed, upright, with when and where it was taken
    for party in (client, cleaner):
        listed = api.get(f"/api/v1/bookings/{booking_id}/evidence", headers=party.auth)
        assert listed.status_code == 200, listed.text
        assert listed.json()["next_cursor"] is None
        [seen] = listed.json()["data"]
        assert (seen["status"], seen["width"], seen["height"]) == ("ready", 400, 600)
        assert seen["captured_at"] == "2026-05-01T08:30:00+00:00"
        assert seen["location"] == {"lat": 52.37, "lng": -4.89}
        assert sorted(seen["thumbnails"], key=int) == ["160", "480", "1280"]
    # and the photo downloads as a JPEG without EXIF, the thumbnails as WebP
    full = api.get(seen["url"], headers=client.auth)
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert full.headers["x-content-type-options"] == "nosniff"
    image = Image.open(io.BytesIO(full.content))
    assert image.size == (400, 600) and not image.getexif()
    thumb = api.get(seen["thumbnails"]["160"], headers=cleaner.auth)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.content)).size == (107, 160)
    # and the original with its GPS is gone from the disk; the upload is in the audit trail
    assert not (settings.file_storage_path / original).exists()
    assert await AuditLog.filter(entity_id=booking_id, action="booking.evidence_added").count() == 1
    # and a size that was never made is a 422 naming the field
    assert_problem(api.get(seen["url"], params={"size": "999"}, headers=client.auth), 422, field="size")


async def test_strangers_get_404_the_client_and_staff_may_look_but_not_upload(api, db, settings, make_account):
    cleaner, client, booking_id = await booking_in(api, make_account, settings)
    sent = upload(api, cleaner, booking_id, png())
    assert sent.status_code == 201, sent.text
    evidence_id = sent.json()["evidence"]["id"]
    for stranger in (make_account(role="client"), make_account(role="cleaner")):
        assert_problem(api.get(f"/api/v1/bookings/{booking_id}/evidence", headers=stranger.auth), 404)
        assert_problem(upload(api, stranger, booking_id, png()), 404)
        assert_problem(api.get(f"/api/v1/bookings/{booking_id}/evidence/{evidence_id}/file",
                               headers=stranger.auth), 404)
    assert_problem(upload(api, client, booking_id, png()), 403)
    # staff see a booking's photos (a dispute is judged on them) but take none
    staff = await make_staff(api, settings)
    assert [e["id"] for e in api.get(f"/api/v1/bookings/{booking_id}/evidence", headers=staff).json()["data"]] == [
        evidence_id]
    assert_problem(api.post(f"/api/v1/bookings/{booking_id}/evidence", headers=staff,
                            files={"photo": ("a.png", png(), "image/png")}), 403)
    assert_problem(api.get(f"/api/v1/bookings/{booking_id}/evidence"), 401)
    assert_problem(api.get("/api/v1/bookings/not-a-uuid/evidence", headers=client.auth), 422, field="id")
    assert await BookingEvidence.filter(booking_id=booking_id).count() == 1


@pytest.mark.parametrize("state", ["accepted", "on_the_way"])
async def test_photos_are_taken_while_the_work_is_in_progress_only(api, db, settings, make_account, state):
    cleaner, _, booking_id = await booking_in(api, make_account, settings, state=state)
    assert_problem(upload(api, cleaner, booking_id, png()), 409, code="evidence_not_accepted_now")
    assert await BookingEvidence.filter(booking_id=booking_id).count() == 0


async def test_a_service_that_asks_for_photos_is_completed_only_with_one(api, db, settings, make_account):
    # given a deep clean in progress, and no photo yet
    cleaner, client, booking_id = await booking_in(api, make_account, settings)
    # when the cleaner completes it
    refused = api.post(f"/api/v1/bookings/{booking_id}/complete", headers=cleaner.auth)
    # then it is refused and the booking is still in progress
    assert_problem(refused, 409, code="evidence_required")
    assert api.get(f"/api/v1/bookings/{booking_id}", headers=client.auth).json()["booking"]["state"] == "in_progress"
    # when a photo is uploaded, completion goes through (processing need not have finished)
    assert upload(api, cleaner, booking_id, png()).status_code == 201
    done = api.post(f"/api/v1/bookings/{booking_id}/complete", headers=cleaner.auth)
    assert done.status_code == 200 and done.json()["booking"]["state"] == "completed"
    # and a completed booking's evidence no longer changes
    assert_problem(upload(api, cleaner, booking_id, png()), 409, code="evidence_not_accepted_now")


async def test_a_standard_clean_needs_no_photo(api, db, settings, make_account):
    cleaner, _, booking_id = await booking_in(api, make_account, settings, service="standard")
    services = {s["id"]: s["requires_photo_evidence"] for s in api.get("/api/v1/services").json()["data"]}
    assert services == {**services, "standard": False, "deep": True, "end_of_tenancy": True}
    done = api.post(f"/api/v1/bookings/{booking_id}/complete", headers=cleaner.auth)
    assert done.status_code == 200, done.text


async def test_what_is_not_a_photo_or_too_much_is_refused_with_a_problem(api, db, settings, make_account):
    cleaner, _, booking_id = await booking_in(api, make_account, settings)
    url = f"/api/v1/bookings/{booking_id}/evidence"
    # not multipart, or the wrong field, or two files
    assert_problem(api.post(url, headers=cleaner.auth, content=png()), 415, code="unsupported_media_type")
    assert_problem(upload(api, cleaner, booking_id, png(), field="picture"), 422, field="photo")
    two = api.post(url, headers=cleaner.auth, files=[("photo", ("a.png", png(), "image/png")),
                                                     ("photo", ("b.png", png(), "image/png"))])
    assert_problem(two, 422, field="photo")
    # judged by the bytes, whatever the name and declared type say
    assert_problem(upload(api, cleaner, booking_id, b"%PDF-1.7 an invoice", name="x.jpg"), 415,
                   code="unsupported_file_type")
    assert_problem(upload(api, cleaner, booking_id, b"GIF89a" + bytes(64), name="x.jpg"), 415,
                   code="unsupported_file_type")
    assert_problem(upload(api, cleaner, booking_id, b"\xff\xd8\xff\xe0 truncated"), 422, code="damaged_file")
    assert_problem(upload(api, cleaner, booking_id, b""), 422, field="photo")
    # too large on the wire, or as a decompression bomb
    assert_problem(upload(api, cleaner, booking_id, b"\xff\xd8\xff" + bytes(settings.evidence_photo_max_bytes)),
                   413, code="file_too_large")
    assert_problem(upload(api, cleaner, booking_id, png_header_only(20_000, 20_000)), 422,
                   code="image_too_large")
    # and nothing of it was kept
    assert await BookingEvidence.filter(booking_id=booking_id).count() == 0


async def test_a_booking_takes_a_bounded_number_of_photos(api, db, settings, make_account):
    cleaner, client, booking_id = await booking_in(api, make_account, settings)
    for _ in range(settings.evidence_max_photos_per_booking):
        assert upload(api, cleaner, booking_id, png()).status_code == 201
    assert_problem(upload(api, cleaner, booking_id, png()), 409, code="too_many_evidence_photos")
    # and the list pages through all of them
    seen, cursor = [], None
    while True:
        page = api.get(f"/api/v1/bookings/{booking_id}/evidence", headers=client.auth,
                       params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == settings.evidence_max_photos_per_booking


async def test_malformed_list_and_download_requests_are_problems_not_errors(api, db, settings, make_account):
    cleaner, client, booking_id = await booking_in(api, make_account, settings)
    base = f"/api/v1/bookings/{booking_id}/evidence"
    for params, field in (({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": "WyJ4Il0"}, "cursor"),
                          ({"cursor": "e30"}, "cursor"), ({"limit": "0"}, "limit"), ({"limit": "1e3"}, "limit")):
        assert_problem(api.get(base, params=params, headers=client.auth), 422, field=field)
    assert_problem(api.get(f"{base}/not-a-uuid/file", headers=client.auth), 422, field="evidence_id")
    assert_problem(api.get(f"{base}/{booking_id}/file", headers=client.auth), 404)
    sent = upload(api, cleaner, booking_id, png())
    assert_problem(api.get(f"{base}/{sent.json()['evidence']['id']}/file", params={"size": "160"},
                           headers=client.auth), 409, code="evidence_processing")
