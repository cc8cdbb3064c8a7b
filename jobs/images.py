"""Image jobs: check an uploaded photo, read when and where it was taken, and make safe copies.

`process_image` is pure CPU work (run in a thread): it verifies the type from the bytes, refuses
oversize images and decompression bombs, records capture time and GPS from EXIF, applies the
EXIF orientation, and returns an EXIF-free copy plus WebP thumbnails. The worker stores those
through storage.files. A completion photo's metadata goes into its booking_evidence row
(storage/evidence.py), a chat attachment's into its chat_attachments row (storage/attachments.py,
the same columns and code), a profile photo's into its cleaner_profiles row (storage/supply.py), all
idempotent (a second delivery changes nothing), and the original, EXIF and all, is deleted; for
other images the metadata is written as JSON beside the copies.
"""

from __future__ import annotations

import asyncio
import io
import json
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import NotFound
from core.events import EventType
from core.settings import Settings
from jobs.worker import Job, Poison, WorkerKind
from storage import attachments, evidence, supply
from storage.files import FileStore, file_store

ALLOWED_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL, DATETIME = 36867, 36881, 306


class ImageRefused(ValueError):
    """The bytes are not an image we accept; retrying cannot help."""


@dataclass
class ProcessedImage:
    format: str
    width: int
    height: int
    captured_at: str | None
    gps: dict[str, float] | None
    clean: bytes  # the oriented image without EXIF, in its own format
    thumbnails: dict[int, bytes] = field(default_factory=dict)  # longest side → WebP bytes

    def metadata(self) -> dict[str, Any]:
        return {"format": self.format, "width": self.width, "height": self.height,
                "captured_at": self.captured_at, "gps": self.gps}


def _open(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    if len(data) > max_bytes:
        raise ImageRefused(f"image is {len(data)} bytes; the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageRefused(f"image refused as a decompression bomb: {exc}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageRefused("the file is not a JPEG, PNG or WebP image") from exc
    if image.format not in ALLOWED_FORMATS:
        raise ImageRefused(f"{image.format} images are not accepted; send JPEG, PNG or WebP")
    if image.width * image.height > max_pixels:
        raise ImageRefused(f"image has {image.width}x{image.height} pixels; the limit is {max_pixels}")
    return image


def _captured_at(exif: Image.Exif) -> str | None:
    details = exif.get_ifd(EXIF_IFD)
    raw = details.get(DATETIME_ORIGINAL) or exif.get(DATETIME)
    if not isinstance(raw, str):
        return None
    try:
        stamp = datetime.strptime(raw.strip("\x00 "), "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None
    offset = details.get(OFFSET_TIME_ORIGINAL)
    return stamp + offset.strip("\x00 ") if isinstance(offset, str) else stamp


def _degrees(value: Any, ref: Any) -> float:
    d, m, s = (float(part) for part in value)
    degrees = d + m / 60 + s / 3600
    return -degrees if str(ref).strip("\x00 ").upper() in {"S", "W"} else degrees


def _gps(exif: Image.Exif) -> dict[str, float] | None:
    gps = exif.get_ifd(GPS_IFD)
    try:
        return {"lat": round(_degrees(gps[2], gps[1]), 7), "lon": round(_degrees(gps[4], gps[3]), 7)}
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _read_metadata(exif: Image.Exif) -> tuple[str | None, dict[str, float] | None]:
    """Capture time and place; a malformed EXIF block means no metadata, not a refused image."""
    try:
        return _captured_at(exif), _gps(exif)
    except Exception:  # hostile EXIF can trip any of Pillow's tag parsers
        return None, None


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)  # no exif= given: nothing of the original's EXIF
    return out.getvalue()


def process_image(data: bytes, *, max_bytes: int, max_pixels: int, sizes: list[int]) -> ProcessedImage:
    """Check, read, orient, strip and thumbnail one uploaded image (CPU-bound: run it in a thread)."""
    with _open(data, max_bytes=max_bytes, max_pixels=max_pixels) as image:
        fmt = image.format or ""
        try:
            # Decode every pixel first (a PNG's EXIF may follow its pixels), so that damage shows
            # here as a refusal, never half-way through as an error worth retrying.
            image.load()
            exif = image.getexif()
            oriented = ImageOps.exif_transpose(image)
        except (OSError, ValueError) as exc:  # truncated or corrupt pixel data
            raise ImageRefused(f"the image data is damaged: {exc}") from exc
        captured_at, gps = _read_metadata(exif)
    oriented.info.pop("exif", None)
    mode = "RGBA" if "A" in oriented.getbands() else "RGB"
    oriented = oriented.convert(mode)
    if fmt == "JPEG":
        oriented = oriented.convert("RGB")
        clean = _encode(oriented, "JPEG", quality=90)
    else:
        clean = _encode(oriented, fmt, **({"quality": 90} if fmt == "WEBP" else {}))
    result = ProcessedImage(fmt, oriented.width, oriented.height, captured_at, gps, clean)
    for size in sorted(sizes):
        thumb = oriented.copy()
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
        result.thumbnails[size] = _encode(thumb, "WEBP", quality=80)
    return result


async def _process(data: bytes, settings: Settings) -> ProcessedImage:
    sizes = [int(s) for s in Settings.split(settings.image_thumbnail_sizes)]
    return await asyncio.to_thread(process_image, data, max_bytes=settings.image_max_bytes,
                                   max_pixels=settings.image_max_pixels, sizes=sizes)


async def _store_copies(processed: ProcessedImage, store: FileStore, *, prefix: str) -> tuple[str, dict[str, str]]:
    """Store the clean copy and the thumbnails; return their keys (thumbnails by width)."""
    clean_key = await store.put(processed.clean, prefix=prefix, extension=ALLOWED_FORMATS[processed.format])
    thumbnails = {str(size): await store.put(blob, prefix="thumbnails", extension=".webp")
                  for size, blob in processed.thumbnails.items()}
    return clean_key, thumbnails


async def store_image(data: bytes, settings: Settings, *, image_id: str) -> dict[str, Any]:
    """Process `data` and store the clean copy, thumbnails and metadata; return the metadata."""
    processed = await _process(data, settings)
    store = file_store(settings)
    clean_key, thumbnails = await _store_copies(processed, store, prefix="images")
    metadata = {"image_id": image_id, **processed.metadata(), "clean_key": clean_key, "thumbnails": thumbnails}
    metadata["metadata_key"] = await store.put(json.dumps(metadata).encode(), prefix="image-metadata",
                                               extension=".json")
    return metadata


async def _clean_copies(processed: ProcessedImage, store: FileStore, *, prefix: str) -> evidence.ProcessedEvidence:
    """Store the clean copy and thumbnails of a processed upload; what its row will record."""
    clean_key, thumbnails = await _store_copies(processed, store, prefix=prefix)
    return evidence.ProcessedEvidence(
        clean_key=clean_key, content_type=CONTENT_TYPES[processed.format], thumbnails=thumbnails,
        width=processed.width, height=processed.height, captured_at=processed.captured_at,
        gps=processed.gps)


async def process_evidence(evidence_id: UUID, key: str, settings: Settings, *,
                           rows: Any = evidence, prefix: str = evidence.EVIDENCE_PREFIX) -> bool:
    """A completion photo (or, with `rows=storage.attachments`, a chat attachment): its
    metadata and copies land in its row, once. Returns whether this call applied (False:
    processed or refused already, nothing done)."""
    if not await rows.awaits_processing(evidence_id):
        return False  # the original may be gone already: it is deleted once processed
    store = file_store(settings)
    try:
        processed = await _process(await store.get(key), settings)
    except (ImageRefused, NotFound) as exc:  # no retry brings it back: it stops counting
        await rows.record_refused(evidence_id, reason=str(exc))
        raise
    return bool(await rows.record_processed(evidence_id, await _clean_copies(processed, store, prefix=prefix),
                                            store=store))


async def process_profile_photo(cleaner_id: UUID, key: str, settings: Settings) -> bool:
    """A cleaner's profile photo: its clean copy replaces the photo shown, once (storage/supply.py).
    Returns whether this call applied (False: processed, refused or replaced already)."""
    if not await supply.photo_awaits_processing(cleaner_id, key):
        return False  # the original is deleted once processed or replaced
    store = file_store(settings)
    try:
        processed = await _process(await store.get(key), settings)
    except (ImageRefused, NotFound) as exc:
        if not await supply.record_photo_refused(cleaner_id, key, reason=str(exc), store=store):
            return False  # replaced meanwhile: nothing to refuse
        raise
    return await supply.record_photo_processed(
        cleaner_id, key, await _clean_copies(processed, store, prefix=supply.PROFILE_PHOTO_PREFIX), store=store)


async def handle_image(job: Job, settings: Settings) -> dict[str, Any]:
    """The handler: fetch the uploaded original by key and process it."""
    payload = job.payload
    try:
        # Profile-photo events written before migration 0012 name the key "path".
        key = payload["key"] if "key" in payload else payload["path"]
        if payload.get("kind") == "evidence":
            applied = await process_evidence(UUID(str(payload["image_id"])), key, settings)
            return {"image_id": str(payload["image_id"]), "applied": applied}
        if payload.get("kind") == "chat_attachment":
            applied = await process_evidence(UUID(str(payload["image_id"])), key, settings,
                                             rows=attachments, prefix=attachments.ATTACHMENT_PREFIX)
            return {"image_id": str(payload["image_id"]), "applied": applied}
        if payload.get("kind") == "profile_photo" or str(key).startswith(f"{supply.PROFILE_PHOTO_PREFIX}/"):
            applied = await process_profile_photo(UUID(str(payload["owner_id"])), key, settings)
            return {"image_id": str(payload["image_id"]), "applied": applied}
        data = await file_store(settings).get(key)
        return await store_image(data, settings, image_id=str(payload["image_id"]))
    except (ImageRefused, KeyError, ValueError, NotFound) as exc:
        raise Poison(str(exc)) from exc


def images_worker(settings: Settings) -> WorkerKind:
    async def handle(job: Job) -> None:
        await handle_image(job, settings)

    return WorkerKind("images", {EventType.IMAGE_UPLOADED: handle})
