"""Image processing: type from bytes, bombs and oversize refused, EXIF read then stripped,
orientation applied, three WebP thumbnails; and the images worker end to end."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import struct
import zlib
from uuid import uuid4

import pytest
from nats.aio.client import Client
from PIL import Image
from tortoise.transactions import in_transaction

from core.events import EventType
from jobs.images import ImageRefused, handle_image, images_worker, process_image
from jobs.relay import relay_until_empty
from jobs.worker import Job, Poison, Worker
from storage import outbox
from storage.files import file_store
from storage.models import Booking, BookingEvidence, CleanerProfile, FailedJob, OutboxEvent, User

LIMITS = {"max_bytes": 5_000_000, "max_pixels": 10_000_000, "sizes": [160, 480, 1280]}


def photo(width: int = 600, height: int = 400, *, fmt: str = "JPEG", orientation: int | None = 6) -> bytes:
    """A phone-style photo: stored sideways with an EXIF orientation, capture time and GPS."""
    image = Image.new("RGB", (width, height), (30, 120, 200))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    exif.get_ifd(0x8769)[36867] = "2026:05:01 10:30:00"
    exif.get_ifd(0x8769)[36881] = "+02:00"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (52.0, 22.0, 12.0), "W", (4.0, 53.0, 24.0)
    out = io.BytesIO()
    image.save(out, fmt, exif=exif)
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge canvas (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_a_photo_is_read_oriented_stripped_and_thumbnailed():
    # given a sideways JPEG with capture time and GPS in its EXIF
    data = photo()
    # when it is processed
    result = process_image(data, **LIMITS)
    # then capture time and place are kept as metadata
    assert result.metadata() == {"format": "JPEG", "width": 400, "height": 600,
                                 "captured_at": "2026-05-01T10:30:00+02:00",
                                 "gps": {"lat": 52.37, "lon": -4.89}}
    # and the clean copy is upright and carries no EXIF
    clean = Image.open(io.BytesIO(result.clean))
    assert clean.format == "JPEG" and clean.size == (400, 600) and not clean.getexif()
    # and the three thumbnails are WebP, upright, never enlarged, without EXIF
    sizes = {}
    for size, blob in result.thumbnails.items():
        thumb = Image.open(io.BytesIO(blob))
        assert thumb.format == "WEBP" and not thumb.getexif()
        sizes[size] = thumb.size
    assert sizes == {160: (107, 160), 480: (320, 480), 1280: (400, 600)}


def test_a_png_without_exif_has_no_capture_metadata():
    image = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    result = process_image(out.getvalue(), **LIMITS)
    assert (result.format, result.captured_at, result.gps) == ("PNG", None, None)


@pytest.mark.parametrize("data, reason", [
    (b"%PDF-1.7 not a photo at all", "not a JPEG, PNG or WebP"),
    (b"GIF89a" + b"\0" * 100, "not a JPEG, PNG or WebP"),
    (png_header_only(100_000, 100_000), "decompression bomb"),
    (png_header_only(4000, 3000), "the limit is 10000000"),
    (b"\xff\xd8" + b"\0" * 6_000_000, "bytes; the limit is 5000000"),
])
def test_what_is_not_a_safe_image_is_refused(data, reason):
    with pytest.raises(ImageRefused, match=reason):
        process_image(data, **LIMITS)


async def test_the_images_worker_stores_thumbnails_and_metadata(nc: Client, settings):
    # given an uploaded photo in the file store and its event committed
    store = file_store(settings)
    key = await store.put(photo(), prefix="uploads", extension=".jpg")
    broken = await store.put(b"not an image", prefix="uploads", extension=".jpg")
    async with in_transaction() as tx:
        await outbox.enqueue(EventType.IMAGE_UPLOADED, {"image_id": "img-1", "key": key}, using=tx)
        bad_id = await outbox.enqueue(EventType.IMAGE_UPLOADED, {"image_id": "img-2", "key": broken}, using=tx)
    # when the relay and the images worker run
    await relay_until_empty(nc, settings)
    await Worker(nc, settings, images_worker(settings)).run(asyncio.Event(), until_idle_s=1.0)
    # then the metadata and three thumbnails are in the store
    metadata_keys = [p for p in settings.file_storage_path.glob("image-metadata/*/*/*.json")]
    stored = [json.loads(p.read_bytes()) for p in metadata_keys]
    mine = [m for m in stored if m["image_id"] == "img-1"]
    assert len(mine) == 1 and mine[0]["captured_at"] == "2026-05-01T10:30:00+02:00"
    assert sorted(mine[0]["thumbnails"]) == ["1280", "160", "480"]
    thumb = Image.open(io.BytesIO(await store.get(mine[0]["thumbnails"]["160"])))
    assert thumb.format == "WEBP"
    # and the file that was not an image is dead-lettered, not retried
    failed = await FailedJob.get(event_id=bad_id)
    assert failed.deliveries == 1 and "not a JPEG, PNG or WebP" in failed.error


# --- completion evidence and profile photos through the worker ---


async def evidence_in_progress(settings, data: bytes):
    """A completion photo added through the action, for a booking in progress."""
    from core.supply import OfferedService
    from storage import bookings, evidence, supply
    from tests.storage.test_bookings import bookable_cleaner, make_user, request_for, starting_soon

    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    await supply.update_profile(actor=cleaner, settings=settings, services=[OfferedService("deep", 2600)])
    request = dataclasses.replace(request_for(cleaner, starting_soon(), hours="4"), service="deep")
    booking = await bookings.create_booking(actor=client, settings=settings, request=request)
    for move in (bookings.accept_booking, bookings.mark_on_the_way, bookings.start_booking):
        await move(booking.id, actor=cleaner, settings=settings)
    return await evidence.add_evidence(booking.id, actor=cleaner, data=data, settings=settings,
                                       store=file_store(settings))


def files_under(settings) -> set[str]:
    root = settings.file_storage_path
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


async def test_a_completion_photo_is_processed_once_however_often_its_event_arrives(db, settings):
    # given a completion photo whose event has not been handled yet
    added = await evidence_in_progress(settings, photo())
    job = Job(uuid4(), EventType.IMAGE_UPLOADED, {"image_id": str(added.id), "key": added.storage_key,
                                                  "kind": "evidence"}, deliveries=1)
    # when the handler runs for it
    first = await handle_image(job, settings)
    after_first = files_under(settings)
    row = await BookingEvidence.get(id=added.id)
    # then the row holds the metadata and points at the clean copy; the original is gone
    assert first == {"image_id": str(added.id), "applied": True}
    assert (row.status, row.width, row.height, row.content_type) == ("ready", 400, 600, "image/jpeg")
    assert row.captured_at.isoformat() == "2026-05-01T08:30:00+00:00"
    assert (row.gps_lat, row.gps_lng) == (52.37, -4.89)
    assert row.storage_key != added.storage_key and added.storage_key not in after_first
    assert sorted(row.thumbnails, key=int) == ["160", "480", "1280"]
    assert {row.storage_key, *row.thumbnails.values()} <= after_first
    assert not Image.open(io.BytesIO(await file_store(settings).get(row.storage_key))).getexif()
    # when the same event is delivered again, and again under another event id
    again = await handle_image(job, settings)
    other = await handle_image(Job(uuid4(), job.type, job.payload, deliveries=1), settings)
    # then nothing more happens: same row, same files
    assert again == other == {"image_id": str(added.id), "applied": False}
    assert files_under(settings) == after_first
    unchanged = await BookingEvidence.get(id=added.id)
    assert (unchanged.storage_key, unchanged.processed_at) == (row.storage_key, row.processed_at)


async def test_two_workers_racing_on_one_photo_leave_one_result_and_no_stray_files(db, settings):
    # given a completion photo, and two deliveries of its event handled at the same time
    added = await evidence_in_progress(settings, photo(orientation=None))
    before = files_under(settings)
    job = Job(uuid4(), EventType.IMAGE_UPLOADED, {"image_id": str(added.id), "key": added.storage_key,
                                                  "kind": "evidence"}, deliveries=1)
    results = await asyncio.gather(handle_image(job, settings), handle_image(job, settings),
                                   return_exceptions=True)
    # then at most one applied (the other found it done, or the original gone: a poison job)
    applied = [r for r in results if isinstance(r, dict) and r["applied"]]
    assert len(applied) == 1, results
    row = await BookingEvidence.get(id=added.id)
    assert row.status == "ready"
    # and the files are exactly the one clean copy and its thumbnails, in place of the original
    assert files_under(settings) == (before - {added.storage_key}) | {row.storage_key, *row.thumbnails.values()}


async def test_a_photo_the_job_cannot_decode_is_refused_and_stops_counting(db, settings):
    # given a PNG whose chunks are sound but whose pixel data is cut short (it passes the upload check)
    added = await evidence_in_progress(settings, png_header_only(64, 64))
    job = Job(uuid4(), EventType.IMAGE_UPLOADED, {"image_id": str(added.id), "key": added.storage_key,
                                                  "kind": "evidence"}, deliveries=1)
    # when the handler runs, the job is poison (no retry helps) and the row says why
    with pytest.raises(Poison, match="damaged"):
        await handle_image(job, settings)
    row = await BookingEvidence.get(id=added.id)
    assert row.status == "refused" and "damaged" in row.refused_reason
    # and the deep clean cannot be completed on the strength of it
    from core.errors import Conflict
    from storage import bookings
    booking = await Booking.get(id=added.booking_id)
    with pytest.raises(Conflict, match="photo") as refused:
        await bookings.complete_booking(booking.id, actor=await User.get(id=booking.cleaner_id), settings=settings)
    assert refused.value.code == "evidence_required"
    assert (await Booking.get(id=booking.id)).state == "in_progress"


async def profile_photo_job(cleaner: User) -> Job:
    """The images job for the cleaner's latest upload, as its outbox row describes it."""
    rows = await OutboxEvent.filter(type=EventType.IMAGE_UPLOADED).order_by("-id").limit(50)
    row = next(r for r in rows if r.payload.get("owner_id") == str(cleaner.id))
    return Job(row.event_id, EventType.IMAGE_UPLOADED, row.payload, deliveries=1)


async def test_a_profile_photo_event_is_processed_not_dead_lettered(nc: Client, settings):
    # given a cleaner who changes their profile photo
    from storage import supply
    from tests.storage.test_bookings import make_user

    cleaner = await make_user(settings, "cleaner")
    await supply.set_profile_photo(actor=cleaner, data=photo(), settings=settings, store=file_store(settings))
    original = (await CleanerProfile.get(user_id=cleaner.id)).photo_upload_key
    # when the relay and the images worker run
    await relay_until_empty(nc, settings)
    await Worker(nc, settings, images_worker(settings)).run(asyncio.Event(), until_idle_s=1.0)
    # then the profile shows the processed copy, with the EXIF's time and place in its row
    profile = await CleanerProfile.get(user_id=cleaner.id)
    assert (profile.photo_status, profile.photo_upload_key) == ("ready", None)
    assert (profile.photo_gps_lat, profile.photo_gps_lng) == (52.37, -4.89)
    assert profile.photo_path != original and original not in files_under(settings)
    # and no JSON metadata file is written for it, and nothing failed
    stored = [json.loads(p.read_bytes()) for p in settings.file_storage_path.glob("image-metadata/*/*/*.json")]
    assert not [m for m in stored if m["image_id"] in original]
    assert not await FailedJob.filter(error__contains=str(cleaner.id)).exists()
    assert not await FailedJob.filter(error__contains="'key'").exists()


async def test_a_profile_photo_is_processed_once_however_often_its_event_arrives(db, settings):
    # given a cleaner's uploaded photo whose event has not been handled yet
    from storage import supply
    from tests.storage.test_bookings import make_user

    cleaner = await make_user(settings, "cleaner")
    await supply.set_profile_photo(actor=cleaner, data=photo(), settings=settings, store=file_store(settings))
    job = await profile_photo_job(cleaner)
    # when the handler runs for it
    assert (await handle_image(job, settings))["applied"] is True
    after_first = files_under(settings)
    row = await CleanerProfile.get(user_id=cleaner.id)
    # then the row holds the metadata and the upright, EXIF-free copy
    assert (row.photo_width, row.photo_height, row.photo_content_type) == (400, 600, "image/jpeg")
    assert row.photo_captured_at.isoformat() == "2026-05-01T08:30:00+00:00"  # 10:30 at +02:00 in the EXIF
    assert sorted(row.photo_thumbnails, key=int) == ["160", "480", "1280"]
    assert {row.photo_path, *row.photo_thumbnails.values()} <= after_first
    assert not Image.open(io.BytesIO(await file_store(settings).get(row.photo_path))).getexif()
    # when the same event is delivered again, and again under another event id
    again = await handle_image(job, settings)
    other = await handle_image(Job(uuid4(), job.type, job.payload, deliveries=1), settings)
    # then nothing more happens: same row, same files
    assert again["applied"] is other["applied"] is False
    assert files_under(settings) == after_first
    unchanged = await CleanerProfile.get(user_id=cleaner.id)
    assert (unchanged.photo_path, unchanged.photo_processed_at) == (row.photo_path, row.photo_processed_at)


async def test_the_event_of_a_replaced_upload_changes_nothing(db, settings):
    # given a cleaner who uploads twice before the images job runs
    from storage import supply
    from tests.storage.test_bookings import make_user

    cleaner = await make_user(settings, "cleaner")
    store = file_store(settings)
    await supply.set_profile_photo(actor=cleaner, data=photo(), settings=settings, store=store)
    first = await profile_photo_job(cleaner)
    await supply.set_profile_photo(actor=cleaner, data=photo(300, 200), settings=settings, store=store)
    second = await profile_photo_job(cleaner)
    before = files_under(settings)
    # when the first upload's event arrives: nothing to do, and it is not a failure
    assert (await handle_image(first, settings))["applied"] is False
    assert files_under(settings) == before
    # when the second's arrives, that photo is the one shown
    assert (await handle_image(second, settings))["applied"] is True
    assert (await CleanerProfile.get(user_id=cleaner.id)).photo_width == 200


async def test_a_decompression_bomb_is_refused_by_the_job_and_the_original_deleted(db, settings):
    # given a profile photo that the upload check let through (a deployment with a looser upload
    # limit) but that decodes to a hundred million pixels
    from storage import supply
    from tests.core.test_supply import png_bomb
    from tests.storage.test_bookings import make_user

    cleaner = await make_user(settings, "cleaner")
    loose = settings.model_copy(update={"upload_max_image_pixels": 150_000_000, "image_max_pixels": 150_000_000})
    await supply.set_profile_photo(actor=cleaner, data=png_bomb(10_000, 10_000), settings=loose,
                                   store=file_store(settings))
    job = await profile_photo_job(cleaner)
    # when the images job handles it, the job is poison (no retry helps)
    with pytest.raises(Poison, match="decompression bomb"):
        await handle_image(job, loose)
    # then the cleaner is told, nothing is shown, and the bomb is gone from the disk
    profile = await CleanerProfile.get(user_id=cleaner.id)
    assert (profile.photo_status, profile.photo_path) == ("refused", None)
    assert "decompression bomb" in profile.photo_refused_reason
    assert job.payload["key"] not in files_under(settings)
    # and a second delivery has no second effect
    assert (await handle_image(job, loose))["applied"] is False
