"""Completion evidence actions: add a photo to a booking, list and read them, record what the
images job found, and the check that completion makes.

Rules are core/evidence.py's. A photo's bytes go to the file store before its transaction and
are deleted again when the transaction fails, so no row points at a missing file. The booking
row is locked by each upload, as by each transition, so a photo and the completion that counts
it are ordered. The images job later replaces the original (with its EXIF, GPS included) by the
upright, EXIF-free copy; what the EXIF said is kept in the row. Nothing here decides who may
see a booking: storage.bookings does (a stranger gets 404).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from tortoise.transactions import in_transaction

from core.bookings import Party
from core.clock import utcnow
from core.errors import Conflict, Invalid, NotFound
from core.events import EventType
from core.evidence import (
    COUNTING_STATUSES,
    EvidenceStatus,
    capture_time,
    check_may_add_evidence,
    check_may_complete,
)
from core.ids import new_id
from core.settings import Settings
from core.supply import EXTENSIONS, IMAGE_TYPES
from storage import audit, bookings, outbox
from storage.files import FileStore, judge_upload
from storage.models import (
    Booking,
    BookingEvidence,
    ChatAttachment,
    CleanerProfile,
    ServiceType,
    User,
)
from storage.models.images import UploadedImage
from storage.pagination import time_keyset_page

EVIDENCE_PREFIX = "evidence"


@dataclass(frozen=True)
class ProcessedEvidence:
    """What the images job made of one photo (jobs/images.py)."""

    clean_key: str
    content_type: str
    thumbnails: dict[str, str]  # width in pixels → key
    width: int
    height: int
    captured_at: str | None  # ISO 8601 from EXIF, with or without an offset
    gps: dict[str, float] | None  # {"lat", "lon"}


async def check_may_add(booking_id: UUID, *, actor: User, settings: Settings) -> Party:
    """Whether `actor` may add a photo now (the edge asks before it reads the upload)."""
    booking, party = await bookings.get_booking(actor=actor, booking_id=booking_id)
    photos = await BookingEvidence.filter(booking_id=booking_id).count()
    check_may_add_evidence(party=party, state=booking.state, photos=photos,
                           max_photos=settings.evidence_max_photos_per_booking)
    return party


async def add_evidence(booking_id: UUID, *, actor: User, data: bytes, settings: Settings,
                       store: FileStore) -> BookingEvidence:
    """The booking's cleaner adds one photo while at work; the images job is asked to process it."""
    party = await check_may_add(booking_id, actor=actor, settings=settings)
    max_photos = settings.evidence_max_photos_per_booking
    counted = BookingEvidence.filter(booking_id=booking_id)
    content_type = await judge_upload(data, allowed=IMAGE_TYPES, max_bytes=settings.evidence_photo_max_bytes,
                                      settings=settings, field="photo")
    key = await store.put(data, prefix=EVIDENCE_PREFIX, extension=EXTENSIONS[content_type])
    try:
        async with in_transaction() as tx:
            booking = await Booking.filter(id=booking_id).using_db(tx).select_for_update().get()
            check_may_add_evidence(party=party, state=booking.state, photos=await counted.using_db(tx).count(),
                                   max_photos=max_photos)
            evidence = await BookingEvidence.create(
                id=new_id(), booking_id=booking_id, uploaded_by_id=actor.id, storage_key=key,
                content_type=content_type, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                using_db=tx)
            await audit.record(actor_id=actor.id, action="booking.evidence_added", entity_type="booking",
                               entity_id=booking_id, after={"evidence_id": str(evidence.id)}, using=tx)
            await outbox.enqueue(EventType.IMAGE_UPLOADED, {"image_id": str(evidence.id), "key": key,
                                                            "kind": "evidence", "owner_id": str(actor.id)},
                                 using=tx)
    except BaseException:
        await store.delete(key)
        raise
    return evidence


async def list_evidence(booking_id: UUID, *, actor: User, cursor: str | None,
                        limit: int) -> tuple[list[BookingEvidence], str | None]:
    """A booking's photos, oldest first, for its parties and staff."""
    await bookings.get_booking(actor=actor, booking_id=booking_id)
    query = BookingEvidence.filter(booking_id=booking_id)
    return await time_keyset_page(query, field="created_at", cursor=cursor, limit=limit, newest_first=False)


async def read_evidence_file(booking_id: UUID, evidence_id: UUID, *, actor: User, size: str | None,
                             store: FileStore) -> tuple[BookingEvidence, str, bytes]:
    """One photo (or one of its thumbnails) for a party or staff: (row, content type, bytes).
    Only processed photos are served, so no file with its EXIF ever leaves the server."""
    await bookings.get_booking(actor=actor, booking_id=booking_id)
    evidence = await BookingEvidence.get_or_none(id=evidence_id, booking_id=booking_id)
    if evidence is None:
        raise NotFound("no such photo")
    content_type, data = await read_processed_image(evidence, size=size, store=store, noun="photo",
                                                    code_prefix="evidence")
    return evidence, content_type, data


async def read_processed_image(row: UploadedImage, *, size: str | None, store: FileStore, noun: str,
                               code_prefix: str) -> tuple[str, bytes]:
    """The processed file of any uploaded image (or its thumbnail of `size`): (content type, bytes).
    409 `<code_prefix>_<status>` until the images job has made the EXIF-free copy."""
    if row.status != EvidenceStatus.READY:
        raise Conflict(f"the {noun} is {row.status}; files are served once processed",
                       code=f"{code_prefix}_{row.status}")
    if size is None:
        return row.content_type, await store.get(row.storage_key)
    if size not in row.thumbnails:
        raise Invalid(f"must be one of: {', '.join(sorted(row.thumbnails, key=int))}", field="size")
    return "image/webp", await store.get(row.thumbnails[size])


async def require_evidence(booking: Booking) -> None:
    """The completion guard: a service that asks for photos needs one (storage.bookings)."""
    service = await ServiceType.get(id=booking.service_id)
    photos = await BookingEvidence.filter(booking_id=booking.id, status__in=list(COUNTING_STATUSES)).count()
    check_may_complete(requires_photos=service.requires_photo_evidence, photos=photos)


# --- what the images job found (shared with chat attachments: storage/attachments.py) ---

# Models whose rows hold one uploaded image with the columns of booking_evidence; the booking
# field names the booking whose cleaner's time zone reads a capture time without an offset.
ImageRow = type[BookingEvidence] | type[ChatAttachment]


async def awaits_processing(evidence_id: UUID, *, model: ImageRow = BookingEvidence) -> bool:
    return await model.filter(id=evidence_id, status=EvidenceStatus.PROCESSING).exists()


async def record_processed(evidence_id: UUID, result: ProcessedEvidence, *, store: FileStore,
                           model: ImageRow = BookingEvidence, booking_field: str = "booking_id") -> bool:
    """Point the row at the clean copy and keep the metadata; the original is deleted after
    commit. Idempotent: a row already processed (a second delivery, a racing worker) keeps the
    first result, and this call's copies are deleted. Returns whether this call applied."""
    made = [result.clean_key, *result.thumbnails.values()]
    original = None
    async with in_transaction() as tx:
        row = await model.filter(id=evidence_id).using_db(tx).select_for_update().first()
        if row is not None and row.status == EvidenceStatus.PROCESSING:
            booking_id = getattr(row, booking_field)
            booking = await Booking.filter(id=booking_id).using_db(tx).only("cleaner_id").get()
            profile = await CleanerProfile.filter(user_id=booking.cleaner_id).using_db(tx).only("time_zone").first()
            original = row.storage_key
            gps: dict[str, Any] = result.gps or {}
            row.update_from_dict({
                "status": EvidenceStatus.READY, "storage_key": result.clean_key,
                "content_type": result.content_type, "thumbnails": result.thumbnails,
                "width": result.width, "height": result.height,
                "captured_at": capture_time(result.captured_at,
                                            time_zone=profile.time_zone if profile else "UTC"),
                "gps_lat": gps.get("lat"), "gps_lng": gps.get("lon"), "processed_at": utcnow()})
            await row.save(using_db=tx)
    for key in ([original] if original else made):
        await store.delete(key)
    return original is not None


async def record_refused(evidence_id: UUID, *, reason: str, model: ImageRow = BookingEvidence) -> None:
    """The images job could not use the photo: it no longer counts towards completion."""
    await model.filter(id=evidence_id, status=EvidenceStatus.PROCESSING).update(
        status=EvidenceStatus.REFUSED, refused_reason=reason[:1000], processed_at=utcnow())
