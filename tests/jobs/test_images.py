"""Image processing: type from bytes, bombs and oversize refused, EXIF read then stripped,
orientation applied, three WebP thumbnails; and the images worker end to end."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import zlib

import pytest
from nats.aio.client import Client
from PIL import Image
from tortoise.transactions import in_transaction

from core.events import EventType
from jobs.images import ImageRefused, images_worker, process_image
from jobs.relay import relay_until_empty
from jobs.worker import Worker
from storage import outbox
from storage.files import file_store
from storage.models import FailedJob

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
