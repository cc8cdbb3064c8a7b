"""Profile photos over HTTP: a cleaner uploads one, the images job makes the upright, EXIF-free
copy and thumbnails and keeps capture time and place in the database, and anyone can fetch the
processed photo of a verified cleaner. The original, GPS and all, is never served and is deleted."""

from __future__ import annotations

import io

from PIL import Image

from storage.models import AuditLog, CleanerProfile, User
from tests.core.test_supply import image_bytes, png_bomb
from tests.edge.test_evidence import nats_client, run_images  # noqa: F401  (a fixture, and a helper)
from tests.edge.test_search import search, somewhere, square
from tests.edge.test_supply import assert_problem
from tests.jobs.test_images import photo, png_header_only
from tests.storage.test_bookings import make_bookable


def upload(api, account, data, *, name="me.jpg", content_type="image/jpeg"):
    return api.post("/api/v1/cleaner/profile/photo", headers=account.auth,
                    files={"photo": (name, data, content_type)})


def own_photo(api, account) -> dict:
    response = api.get("/api/v1/cleaner/profile", headers=account.auth)
    assert response.status_code == 200, response.text
    return response.json()["profile"]["photo"]


def files_under(settings) -> set[str]:
    root = settings.file_storage_path
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


async def verified(make_account, settings):
    account = make_account(role="cleaner")
    await make_bookable(await User.get(id=account.id), settings)
    return account


async def test_a_photo_is_processed_then_served_upright_without_exif_to_anyone(
        api, db, nats_client, settings, make_account):  # noqa: F811
    # given a verified cleaner
    cleaner = await verified(make_account, settings)
    public = f"/api/v1/cleaners/{cleaner.id}/photo"
    # when they upload a phone photo (sideways, with capture time and GPS in its EXIF)
    sent = upload(api, cleaner, photo())
    # then it waits for the images job; nothing is shown or served yet
    assert sent.status_code == 200, sent.text
    assert sent.json()["profile"]["photo"] == {"status": "processing", "refused_reason": None,
                                               "processed_at": None, "shown": None}
    original = (await CleanerProfile.get(user_id=cleaner.id)).photo_upload_key
    assert (settings.file_storage_path / original).exists()
    assert_problem(api.get(public), 404)
    # when the images job has run
    await run_images(nats_client, settings)
    # then the cleaner sees it ready, with the public URLs of the photo and three thumbnails
    mine = own_photo(api, cleaner)
    assert mine["status"] == "ready" and mine["processed_at"] is not None
    shown = mine["shown"]
    assert (shown["width"], shown["height"]) == (400, 600)
    assert shown["url"].startswith(public + "?v=")
    assert sorted(shown["thumbnails"], key=int) == ["160", "480", "1280"]
    # and the database keeps when and where it was taken; the original with its GPS is gone
    profile = await CleanerProfile.get(user_id=cleaner.id)
    assert profile.photo_captured_at.isoformat() == "2026-05-01T08:30:00+00:00"
    assert (profile.photo_gps_lat, profile.photo_gps_lng) == (52.37, -4.89)
    assert (profile.photo_upload_key, profile.photo_content_type) == (None, "image/jpeg")
    assert not (settings.file_storage_path / original).exists()
    # and anyone, signed in or not, gets the upright photo without EXIF
    full = api.get(shown["url"])
    assert full.status_code == 200, full.text
    assert full.headers["content-type"] == "image/jpeg" and full.headers["x-content-type-options"] == "nosniff"
    image = Image.open(io.BytesIO(full.content))
    assert image.size == (400, 600) and not image.getexif()
    # and each thumbnail is WebP, upright, never enlarged
    sizes = {}
    for size, url in shown["thumbnails"].items():
        thumb = api.get(url)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
        sizes[size] = Image.open(io.BytesIO(thumb.content)).size
    assert sizes == {"160": (107, 160), "480": (320, 480), "1280": (400, 600)}
    # and a size that was never made is a 422 naming the field
    assert_problem(api.get(public, params={"size": "999"}), 422, field="size")
    assert await AuditLog.filter(entity_id=cleaner.id, action="cleaner.photo_uploaded").count() == 1
    # and clients see the same photo block on the cleaner in search results
    lat, lng = somewhere()
    assert api.put("/api/v1/cleaner/service-area", headers=cleaner.auth, json=square(lat, lng)).status_code == 200
    found = search(api, make_account(role="client"), lat=lat, lng=lng)["data"]
    assert [(c["cleaner_id"], c["photo"]) for c in found] == [(cleaner.id, shown)]


async def test_a_new_photo_replaces_the_old_one_only_once_it_is_processed(
        api, db, nats_client, settings, make_account):  # noqa: F811
    # given a verified cleaner whose photo is shown
    cleaner = await verified(make_account, settings)
    upload(api, cleaner, photo())
    await run_images(nats_client, settings)
    first = await CleanerProfile.get(user_id=cleaner.id)
    old_files = {first.photo_path, *first.photo_thumbnails.values()}
    # when they upload a PNG instead
    assert upload(api, cleaner, image_bytes("PNG", (300, 300)), name="new.png").status_code == 200
    # then the old photo stays shown while the new one waits
    mine = own_photo(api, cleaner)
    assert mine["status"] == "processing" and mine["shown"]["width"] == 400
    assert api.get(f"/api/v1/cleaners/{cleaner.id}/photo").headers["content-type"] == "image/jpeg"
    # when the images job has run
    await run_images(nats_client, settings)
    # then the new one is shown and the old photo's files are gone
    served = api.get(f"/api/v1/cleaners/{cleaner.id}/photo")
    assert served.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).size == (300, 300)
    assert not old_files & files_under(settings)
    assert own_photo(api, cleaner)["shown"]["url"] != mine["shown"]["url"]  # a new URL: no stale cache


async def test_an_image_the_job_cannot_use_is_refused_and_the_old_photo_stays(
        api, db, nats_client, settings, make_account):  # noqa: F811
    # given a verified cleaner whose photo is shown
    cleaner = await verified(make_account, settings)
    upload(api, cleaner, photo(orientation=None))
    await run_images(nats_client, settings)
    shown = own_photo(api, cleaner)["shown"]
    # when they upload a PNG whose pixel data is cut short (it passes the upload check)
    assert upload(api, cleaner, png_header_only(64, 64), name="x.png").status_code == 200
    waiting = (await CleanerProfile.get(user_id=cleaner.id)).photo_upload_key
    await run_images(nats_client, settings)
    # then the cleaner is told why, the previous photo is still the one shown, and the bad file is gone
    mine = own_photo(api, cleaner)
    assert mine["status"] == "refused" and "damaged" in mine["refused_reason"]
    assert mine["shown"] == shown
    assert api.get(shown["url"]).status_code == 200
    assert not (settings.file_storage_path / waiting).exists()


async def test_a_decompression_bomb_is_refused_at_the_door_and_changes_nothing(
        api, db, settings, make_account):
    cleaner = make_account(role="cleaner")
    before = files_under(settings)
    assert_problem(upload(api, cleaner, png_bomb(20_000, 20_000), name="bomb.png"), 422, field="photo",
                   code="image_too_large")
    assert own_photo(api, cleaner)["status"] is None
    assert files_under(settings) == before


async def test_only_a_verified_cleaners_processed_photo_is_served(
        api, db, nats_client, settings, make_account):  # noqa: F811
    # given a cleaner who is not verified, with a processed photo
    cleaner = make_account(role="cleaner")
    upload(api, cleaner, photo())
    await run_images(nats_client, settings)
    assert own_photo(api, cleaner)["status"] == "ready"
    # then nobody else gets it
    assert_problem(api.get(f"/api/v1/cleaners/{cleaner.id}/photo"), 404)
    assert_problem(api.get(f"/api/v1/cleaners/{cleaner.id}/photo", params={"size": "160"}), 404)
    # and an unknown cleaner is 404, a malformed id a 422 naming it
    assert_problem(api.get("/api/v1/cleaners/018f0000-0000-7000-8000-000000000000/photo"), 404)
    assert_problem(api.get("/api/v1/cleaners/not-a-uuid/photo"), 422, field="cleaner_id")
