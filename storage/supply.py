"""Cleaner supply actions: the catalogue, profiles, photos, identity verification, availability.

Each write validates with core.supply / core.availability first, then writes in one transaction
with its audit and outbox rows. Uploaded bytes go to the file store before the transaction and
are deleted again when it fails, so no row ever points at a missing file. A profile photo is
shown only once the images job has made its EXIF-free copy (record_photo_processed); identity
documents stay exactly as uploaded, since they are the verification evidence staff review.
Rules live in core; nothing here decides what is allowed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from tortoise import connections
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from core.accounts import Role
from core.availability import DatedException, WeeklyInterval, check_exceptions, check_weekly_rules
from core.clock import utcnow
from core.errors import Forbidden, Invalid, NotFound
from core.events import EventType
from core.evidence import EvidenceStatus, capture_time
from core.ids import new_id
from core.pagination import decode_cursor, encode_cursor
from core.settings import Settings
from core.supply import (
    DOCUMENT_TYPES,
    EXTENSIONS,
    IMAGE_TYPES,
    OfferedService,
    VerificationStatus,
    check_bio,
    check_decision,
    check_may_submit_document,
    check_offered_services,
    check_time_zone,
    check_travel_buffer,
)
from storage import audit, outbox
from storage.evidence import ProcessedEvidence
from storage.files import FileStore, judge_upload
from storage.models import (
    CleanerProfile,
    CleanerService,
    ServiceType,
    User,
    VerificationDocument,
)

DOCUMENTS_PER_REVIEW_ENTRY = 10
PROFILE_PHOTO_PREFIX = "profile-photos"
PhotoStatus = EvidenceStatus  # an upload's way through the images job is the same as evidence's
PHOTO_FIELDS = ("photo_path", "photo_upload_key", "photo_status", "photo_content_type", "photo_thumbnails",
                "photo_width", "photo_height", "photo_captured_at", "photo_gps_lat", "photo_gps_lng",
                "photo_processed_at")

# Tortoise cannot write (or read back) a foreign key to cleaner_profiles, whose primary key is
# itself a relation to users, so rows that point at a profile are inserted and deleted in SQL
# here; filtering on `cleaner_id` works and is used everywhere else.


@dataclass(frozen=True)
class Profile:
    user: User
    profile: CleanerProfile
    services: list[tuple[ServiceType, int]]  # (service, hourly rate in minor units)


@dataclass(frozen=True)
class Availability:
    time_zone: str
    rules: list[WeeklyInterval]
    exceptions: list[DatedException]


@dataclass(frozen=True)
class ReviewEntry:
    user: User
    profile: CleanerProfile
    documents: list[VerificationDocument]


def _require(actor: User, role: Role) -> None:
    if actor.role != role:
        raise Forbidden(f"only {role} accounts may do this")


async def list_services() -> list[ServiceType]:
    """The active service catalogue, in display order."""
    return await ServiceType.filter(active=True).order_by("sort_order", "id")


async def service_offered_at_all(service_id: str) -> bool:
    """Whether `service_id` is in the active catalogue."""
    return await ServiceType.filter(id=service_id, active=True).exists()


# --- profiles ---


async def _ensure_profile(user: User) -> CleanerProfile:
    """The cleaner's profile, created with defaults on first use (safe under concurrency)."""
    profile = await CleanerProfile.get_or_none(user_id=user.id)
    if profile is None:
        await connections.get("default").execute_query(
            "INSERT INTO cleaner_profiles (user_id) VALUES ($1) ON CONFLICT DO NOTHING", [user.id])
        profile = await CleanerProfile.get(user_id=user.id)
    return profile


async def _locked_profile(user_id: UUID, tx: Any) -> CleanerProfile:
    return await CleanerProfile.filter(user_id=user_id).using_db(tx).select_for_update().get()


async def _with_services(user: User, profile: CleanerProfile) -> Profile:
    offered = await CleanerService.filter(cleaner_id=user.id).select_related("service")
    services = sorted(((o.service, o.hourly_rate_minor) for o in offered),
                      key=lambda pair: (pair[0].sort_order, pair[0].id))
    return Profile(user, profile, services)


async def get_profile(*, actor: User) -> Profile:
    _require(actor, Role.CLEANER)
    return await _with_services(actor, await _ensure_profile(actor))


async def update_profile(
    *, actor: User, settings: Settings, bio: str | None = None, time_zone: str | None = None,
    travel_buffer_minutes: int | None = None, services: Sequence[OfferedService] | None = None,
) -> Profile:
    """Change the fields given (None keeps a field); `services` replaces the whole offer."""
    _require(actor, Role.CLEANER)
    wanted: dict[str, Any] = {}
    if bio is not None:
        wanted["bio"] = check_bio(bio)
    if time_zone is not None:
        wanted["time_zone"] = check_time_zone(time_zone)
    if travel_buffer_minutes is not None:
        wanted["travel_buffer_minutes"] = check_travel_buffer(travel_buffer_minutes)
    rates: dict[str, int] | None = None
    if services is not None:
        active = frozenset(str(i) for i in await ServiceType.filter(active=True).values_list("id", flat=True))
        checked = check_offered_services(
            services, active_ids=active, floor_minor=settings.cleaner_min_hourly_rate_minor,
            ceiling_minor=settings.cleaner_max_hourly_rate_minor)
        rates = {s.service_id: s.hourly_rate_minor for s in checked}
    await _ensure_profile(actor)
    async with in_transaction() as tx:
        profile = await _locked_profile(actor.id, tx)
        before = {name: getattr(profile, name) for name, value in wanted.items()
                  if getattr(profile, name) != value}
        after = {name: wanted[name] for name in before}
        if rates is not None:
            current = dict(await CleanerService.filter(cleaner_id=actor.id).using_db(tx)
                           .values_list("service_id", "hourly_rate_minor"))
            if current != rates:
                before["services"], after["services"] = current, rates
                await tx.execute_query("DELETE FROM cleaner_services WHERE cleaner_id = $1", [actor.id])
                if rates:
                    await tx.execute_many(
                        "INSERT INTO cleaner_services (cleaner_id, service_id, hourly_rate_minor) VALUES ($1, $2, $3)",
                        [[actor.id, sid, rate] for sid, rate in rates.items()])
        if after:
            for name in after.keys() - {"services"}:
                setattr(profile, name, after[name])
            await profile.save(update_fields=[*(after.keys() - {"services"}), "updated_at"], using_db=tx)
            await audit.record(actor_id=actor.id, action="cleaner.profile_updated", entity_type="cleaner",
                               entity_id=actor.id, before=before, after=after, using=tx)
            await outbox.enqueue(EventType.CLEANER_PROFILE_UPDATED, {"cleaner_id": str(actor.id)}, using=tx)
    return await _with_services(actor, profile)


async def set_profile_photo(*, actor: User, data: bytes, settings: Settings, store: FileStore) -> Profile:
    """Upload a new profile photo; the images job makes the copy that is shown (record_photo_processed).
    Until then the previous photo, if any, stays shown; an older upload still waiting is dropped."""
    _require(actor, Role.CLEANER)
    content_type = await judge_upload(data, allowed=IMAGE_TYPES, max_bytes=settings.profile_photo_max_bytes,
                                settings=settings, field="photo")
    await _ensure_profile(actor)
    key = await store.put(data, prefix=PROFILE_PHOTO_PREFIX, extension=EXTENSIONS[content_type])
    try:
        async with in_transaction() as tx:
            profile = await _locked_profile(actor.id, tx)
            superseded = profile.photo_upload_key
            profile.update_from_dict({"photo_upload_key": key, "photo_status": PhotoStatus.PROCESSING,
                                      "photo_refused_reason": None})
            await profile.save(update_fields=["photo_upload_key", "photo_status", "photo_refused_reason",
                                              "updated_at"], using_db=tx)
            await audit.record(actor_id=actor.id, action="cleaner.photo_uploaded", entity_type="cleaner",
                               entity_id=actor.id, before={"photo_path": profile.photo_path},
                               after={"photo_upload_key": key, "sha256": hashlib.sha256(data).hexdigest()},
                               using=tx)
            await outbox.enqueue(EventType.IMAGE_UPLOADED, {
                "image_id": PurePosixPath(key).stem, "key": key, "kind": "profile_photo",
                "owner_id": str(actor.id)}, using=tx)
    except BaseException:
        await store.delete(key)
        raise
    if superseded:  # its event finds another key waiting and does nothing
        await store.delete(superseded)
    return await _with_services(actor, profile)


async def read_public_photo(cleaner_id: UUID, *, size: str | None,
                            store: FileStore) -> tuple[CleanerProfile, str, bytes]:
    """A verified cleaner's processed photo, or one of its WebP thumbnails: (profile, type, bytes).
    Only the images job's EXIF-free copies are ever served; anyone else's is 404."""
    profile = await CleanerProfile.get_or_none(user_id=cleaner_id)
    if (profile is None or profile.verification_status != VerificationStatus.APPROVED
            or profile.photo_path is None):
        raise NotFound("no photo for this cleaner")
    if size is None:
        return profile, profile.photo_content_type or "application/octet-stream", await store.get(profile.photo_path)
    if size not in profile.photo_thumbnails:
        raise Invalid(f"must be one of: {', '.join(sorted(profile.photo_thumbnails, key=int))}", field="size")
    return profile, "image/webp", await store.get(profile.photo_thumbnails[size])


# --- what the images job found of a profile photo ---


async def photo_awaits_processing(cleaner_id: UUID, key: str) -> bool:
    return await CleanerProfile.filter(user_id=cleaner_id, photo_upload_key=key,
                                       photo_status=PhotoStatus.PROCESSING).exists()


async def record_photo_processed(cleaner_id: UUID, key: str, result: ProcessedEvidence, *,
                                 store: FileStore) -> bool:
    """Show the clean copy in place of the previous photo and keep the EXIF's time and place; the
    original and the previous photo's files are deleted after commit. Idempotent: when `key` is no
    longer the upload waiting (processed already, replaced, a racing worker), this call's copies
    are deleted and nothing else changes. Returns whether this call applied."""
    discarded = [result.clean_key, *result.thumbnails.values()]
    applied = False
    async with in_transaction() as tx:
        profile = await CleanerProfile.filter(user_id=cleaner_id).using_db(tx).select_for_update().first()
        if (profile is not None and profile.photo_upload_key == key
                and profile.photo_status == PhotoStatus.PROCESSING):
            applied = True
            discarded = [key, *([profile.photo_path] if profile.photo_path else []),
                         *profile.photo_thumbnails.values()]
            gps: dict[str, Any] = result.gps or {}
            profile.update_from_dict({
                "photo_path": result.clean_key, "photo_upload_key": None, "photo_status": PhotoStatus.READY,
                "photo_content_type": result.content_type, "photo_thumbnails": result.thumbnails,
                "photo_width": result.width, "photo_height": result.height,
                "photo_captured_at": capture_time(result.captured_at, time_zone=profile.time_zone),
                "photo_gps_lat": gps.get("lat"), "photo_gps_lng": gps.get("lon"), "photo_processed_at": utcnow()})
            await profile.save(update_fields=[*PHOTO_FIELDS, "updated_at"], using_db=tx)
            await outbox.enqueue(EventType.CLEANER_PROFILE_UPDATED, {"cleaner_id": str(cleaner_id)}, using=tx)
    for stale in discarded:
        await store.delete(stale)
    return applied


async def record_photo_refused(cleaner_id: UUID, key: str, *, reason: str, store: FileStore) -> bool:
    """The images job could not use the upload: say why, keep the previous photo shown, and delete
    the original (it is never served). Returns whether `key` was the upload waiting."""
    async with in_transaction() as tx:
        refused = await CleanerProfile.filter(
            user_id=cleaner_id, photo_upload_key=key, photo_status=PhotoStatus.PROCESSING).using_db(tx).update(
            photo_upload_key=None, photo_status=PhotoStatus.REFUSED, photo_refused_reason=reason[:1000],
            updated_at=utcnow())
    if refused:
        await store.delete(key)
    return bool(refused)


# --- identity verification ---


async def submit_verification_document(
    *, actor: User, data: bytes, settings: Settings, store: FileStore
) -> tuple[CleanerProfile, VerificationDocument]:
    """Store an identity document and put the cleaner in the review queue."""
    _require(actor, Role.CLEANER)
    content_type = await judge_upload(data, allowed=DOCUMENT_TYPES, max_bytes=settings.verification_document_max_bytes,
                                settings=settings, field="document")
    profile = await _ensure_profile(actor)
    pending = VerificationDocument.filter(cleaner_id=actor.id, status=VerificationStatus.PENDING)
    check_may_submit_document(profile.verification_status, pending_documents=await pending.count(),
                              max_pending=settings.verification_max_pending_documents)
    key = await store.put(data, prefix="identity-documents", extension=EXTENSIONS[content_type])
    try:
        async with in_transaction() as tx:
            profile = await _locked_profile(actor.id, tx)
            check_may_submit_document(profile.verification_status,
                                      pending_documents=await pending.using_db(tx).count(),
                                      max_pending=settings.verification_max_pending_documents)
            document_id = new_id()
            await tx.execute_query(
                """INSERT INTO verification_documents (id, cleaner_id, storage_key, content_type, size_bytes, sha256)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                [document_id, actor.id, key, content_type, len(data), hashlib.sha256(data).hexdigest()])
            document = await VerificationDocument.filter(id=document_id).using_db(tx).get()
            before = profile.verification_status
            if before != VerificationStatus.PENDING:
                profile.update_from_dict({"verification_status": VerificationStatus.PENDING,
                                          "verification_reason": None, "verification_changed_at": utcnow()})
                await profile.save(update_fields=["verification_status", "verification_reason",
                                                  "verification_changed_at", "updated_at"], using_db=tx)
            await audit.record(actor_id=actor.id, action="cleaner.verification_submitted",
                               entity_type="cleaner", entity_id=actor.id, before={"status": before},
                               after={"status": "pending", "document_id": str(document.id)}, using=tx)
            await outbox.enqueue(EventType.CLEANER_VERIFICATION_SUBMITTED,
                                 {"cleaner_id": str(actor.id), "document_id": str(document.id)}, using=tx)
    except Exception:
        await store.delete(key)
        raise
    return profile, document


async def get_verification(*, actor: User) -> tuple[CleanerProfile, list[VerificationDocument]]:
    """The cleaner's verification status and their latest documents."""
    _require(actor, Role.CLEANER)
    profile = await _ensure_profile(actor)
    documents = await VerificationDocument.filter(cleaner_id=actor.id).order_by("-created_at").limit(50)
    return profile, documents


async def decide_verification(*, cleaner_id: UUID, decision: str, reason: str, actor: User) -> CleanerProfile:
    """Staff approve or reject a pending verification; every pending document gets the verdict."""
    _require(actor, Role.ADMIN)
    async with in_transaction() as tx:
        if not await User.filter(id=cleaner_id, role=Role.CLEANER).using_db(tx).exists():
            raise NotFound("no such cleaner")
        profile = await CleanerProfile.filter(user_id=cleaner_id).using_db(tx).select_for_update().first()
        before = profile.verification_status if profile else VerificationStatus.UNSUBMITTED
        status, kept_reason = check_decision(before, decision=decision, reason=reason)
        assert profile is not None  # a pending verification has a profile
        now = utcnow()
        profile.update_from_dict({"verification_status": status, "verification_reason": kept_reason,
                                  "verified_at": now if status == VerificationStatus.APPROVED else None,
                                  "verification_changed_at": now})
        await profile.save(update_fields=["verification_status", "verification_reason", "verified_at",
                                          "verification_changed_at", "updated_at"], using_db=tx)
        await VerificationDocument.filter(cleaner_id=cleaner_id, status=VerificationStatus.PENDING).using_db(
            tx).update(status=status, reason=kept_reason, reviewed_by_id=actor.id, reviewed_at=now)
        approved = status == VerificationStatus.APPROVED
        await audit.record(actor_id=actor.id, action=f"cleaner.verification_{status}", entity_type="cleaner",
                           entity_id=cleaner_id, before={"status": before},
                           after={"status": str(status), "reason": kept_reason}, using=tx)
        await outbox.enqueue(
            EventType.CLEANER_VERIFICATION_APPROVED if approved else EventType.CLEANER_VERIFICATION_REJECTED,
            {"cleaner_id": str(cleaner_id), "status": str(status), "reason": kept_reason,
             "decided_by": str(actor.id)}, using=tx)
    return profile


def _review_cursor(raw: str | None) -> tuple[datetime, UUID] | None:
    after = decode_cursor(raw)
    if after is None:
        return None
    try:
        changed_at, user_id = after
        return datetime.fromisoformat(changed_at), UUID(user_id)
    except (TypeError, ValueError):
        raise Invalid("cursor is not one this API issued", field="cursor") from None


async def list_cleaners_for_review(
    *, actor: User, status: str, cursor: str | None, limit: int
) -> tuple[list[ReviewEntry], str | None]:
    """Cleaners in one verification status, longest-waiting first, with their latest documents."""
    _require(actor, Role.ADMIN)
    if status not in {s.value for s in VerificationStatus}:
        raise Invalid(f"must be one of: {', '.join(VerificationStatus)}", field="verification")
    query = CleanerProfile.filter(verification_status=status)
    after = _review_cursor(cursor)
    if after is not None:
        query = query.filter(Q(verification_changed_at__gt=after[0])
                             | Q(verification_changed_at=after[0], user_id__gt=after[1]))
    rows = await query.order_by("verification_changed_at", "user_id").limit(limit + 1)
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor([last.verification_changed_at.isoformat(), str(last.pk)])
    documents: dict[UUID, list[VerificationDocument]] = {}
    if page:
        owner_rows = await connections.get("default").execute_query_dict(
            "SELECT id, cleaner_id FROM verification_documents WHERE cleaner_id = ANY($1)",
            [[p.pk for p in page]])
        owner_of = {row["id"]: row["cleaner_id"] for row in owner_rows}
        for doc in await VerificationDocument.filter(id__in=list(owner_of)).order_by("-created_at"):
            documents.setdefault(owner_of[doc.id], []).append(doc)
    users = {u.id: u for u in await User.filter(id__in=[p.user_id for p in page])}
    entries = [ReviewEntry(users[p.user_id], p, documents.get(p.pk, [])[:DOCUMENTS_PER_REVIEW_ENTRY])
               for p in page]
    return entries, next_cursor


async def read_verification_document(
    *, cleaner_id: UUID, document_id: UUID, actor: User, store: FileStore
) -> tuple[VerificationDocument, bytes]:
    """Staff read an identity document; each reading is in the audit trail."""
    _require(actor, Role.ADMIN)
    document = await VerificationDocument.get_or_none(id=document_id, cleaner_id=cleaner_id)
    if document is None:
        raise NotFound("no such document")
    data = await store.get(document.storage_key)
    async with in_transaction() as tx:
        await audit.record(actor_id=actor.id, action="cleaner.verification_document_read",
                           entity_type="cleaner", entity_id=cleaner_id,
                           after={"document_id": str(document_id)}, using=tx)
    return document, data


# --- availability ---


def _local_today(time_zone: str) -> date:
    return utcnow().astimezone(ZoneInfo(time_zone)).date()


async def _stored_availability(cleaner_id: UUID, *, using: Any = None) -> tuple[list[WeeklyInterval],
                                                                                  list[DatedException]]:
    conn = using or connections.get("default")
    rules = await conn.execute_query_dict(
        """SELECT weekday, start_minute, end_minute FROM availability_rules WHERE cleaner_id = $1
           ORDER BY weekday, start_minute""", [cleaner_id])
    exceptions = await conn.execute_query_dict(
        """SELECT day, kind, start_minute, end_minute FROM availability_exceptions WHERE cleaner_id = $1
           ORDER BY day, coalesce(start_minute, 0)""", [cleaner_id])
    return ([WeeklyInterval(r["weekday"], r["start_minute"], r["end_minute"]) for r in rules],
            [DatedException(e["day"], e["kind"], e["start_minute"], e["end_minute"]) for e in exceptions])


async def get_availability(*, actor: User) -> Availability:
    """The weekly schedule and the exceptions from today on (the cleaner's local today)."""
    _require(actor, Role.CLEANER)
    profile = await _ensure_profile(actor)
    rules, exceptions = await _stored_availability(actor.id)
    today = _local_today(profile.time_zone)
    return Availability(profile.time_zone, rules, [e for e in exceptions if e.day >= today])


async def replace_availability(
    *, actor: User, rules: Sequence[WeeklyInterval], exceptions: Sequence[DatedException]
) -> Availability:
    """Replace the weekly schedule and every exception at once; past exceptions are dropped."""
    _require(actor, Role.CLEANER)
    checked_rules = check_weekly_rules(rules)
    await _ensure_profile(actor)
    async with in_transaction() as tx:
        profile = await _locked_profile(actor.id, tx)
        checked = check_exceptions(exceptions, today=_local_today(profile.time_zone))
        if await _stored_availability(actor.id, using=tx) != (checked_rules, checked):
            await tx.execute_query("DELETE FROM availability_rules WHERE cleaner_id = $1", [actor.id])
            await tx.execute_query("DELETE FROM availability_exceptions WHERE cleaner_id = $1", [actor.id])
            if checked_rules:
                await tx.execute_many(
                    """INSERT INTO availability_rules (cleaner_id, weekday, start_minute, end_minute)
                       VALUES ($1, $2, $3, $4)""",
                    [[actor.id, r.weekday, r.start_minute, r.end_minute] for r in checked_rules])
            if checked:
                await tx.execute_many(
                    """INSERT INTO availability_exceptions (cleaner_id, day, kind, start_minute, end_minute)
                       VALUES ($1, $2, $3, $4, $5)""",
                    [[actor.id, e.day, e.kind, e.start_minute, e.end_minute] for e in checked])
            await audit.record(actor_id=actor.id, action="cleaner.availability_replaced", entity_type="cleaner",
                               entity_id=actor.id, after={"intervals": len(checked_rules),
                                                          "exceptions": len(checked)}, using=tx)
            await outbox.enqueue(EventType.CLEANER_AVAILABILITY_UPDATED, {"cleaner_id": str(actor.id)},
                                 using=tx)
    return Availability(profile.time_zone, checked_rules, checked)
