"""Cleaner supply over REST: the public catalogue, the cleaner's own profile, verification and
availability, and the staff review queue. Thin handlers: parse, authorise, call storage.supply."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field
from sanic import Blueprint, Request
from sanic.headers import parse_content_header
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from core.accounts import Role
from core.availability import MAX_EXCEPTIONS, MAX_WEEKLY_INTERVALS, DatedException, WeeklyInterval
from core.errors import Invalid
from core.pagination import parse_limit
from core.reviews import shown_average
from core.supply import (
    EXTENSIONS,
    OfferedService,
    UnsupportedUpload,
    UploadTooLarge,
    VerificationStatus,
)
from edge.accounts import settings_of
from edge.auth import authenticated, current_session
from edge.responses import (
    DOCUMENT_FILE,
    IMAGE_FILE,
    AvailabilityAnswer,
    Catalogue,
    DocumentSent,
    ProfileAnswer,
    ReviewQueuePage,
    VerificationAnswer,
    VerificationDecided,
    json_response,
)
from edge.staff import parse_uuid
from edge.validation import (
    Body,
    RawSchema,
    openapi_body,
    openapi_upload,
    paged,
    parse_body,
)
from storage import supply
from storage.files import FileStore, file_store
from storage.models import CleanerProfile, ServiceType, VerificationDocument

catalogue = Blueprint("supply_catalogue", url_prefix="/api/v1")
cleaner = Blueprint("supply_cleaner", url_prefix="/api/v1/cleaner")
review = Blueprint("supply_review", url_prefix="/api/v1/admin/cleaners")
bp = Blueprint.group(catalogue, cleaner, review)

MULTIPART_OVERHEAD_BYTES = 16 * 1024  # boundaries and part headers around the one file


# --- request bodies ---


class OfferedServiceBody(Body):
    service_id: str = Field(max_length=40)
    hourly_rate_minor: int


class ProfileBody(Body):
    """Fields left out keep their value; `services` replaces the whole offer."""

    bio: str | None = Field(default=None, max_length=5000)
    time_zone: str | None = Field(default=None, max_length=64)
    travel_buffer_minutes: int | None = None
    services: list[OfferedServiceBody] | None = Field(default=None, max_length=50)


class WeeklyIntervalBody(Body):
    weekday: int = Field(ge=0, le=6, description="0 = Monday")
    start_minute: int = Field(ge=0, le=1439, description="minutes from local midnight")
    end_minute: int = Field(ge=1, le=1440)


class ExceptionBody(Body):
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="local date, YYYY-MM-DD")
    kind: Literal["off", "extra"]
    start_minute: int | None = Field(default=None, ge=0, le=1439, description="none with none: all day off")
    end_minute: int | None = Field(default=None, ge=1, le=1440)


class AvailabilityBody(Body):
    weekly: list[WeeklyIntervalBody] = Field(max_length=MAX_WEEKLY_INTERVALS)
    exceptions: list[ExceptionBody] = Field(default_factory=list, max_length=MAX_EXCEPTIONS)


class DecisionBody(Body):
    decision: Literal["approve", "reject"]
    reason: str = Field(default="", max_length=1000)


# --- response shapes ---


def money(amount_minor: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": amount_minor, "currency": currency}


def service_json(service: ServiceType) -> dict[str, Any]:
    return {"id": service.id, "name": service.name, "description": service.description,
            "price": money(service.base_price_minor, service.currency),
            "min_duration_minutes": service.min_duration_minutes,
            "requires_photo_evidence": service.requires_photo_evidence}


def verification_json(profile: CleanerProfile) -> dict[str, Any]:
    return {"status": profile.verification_status, "reason": profile.verification_reason,
            "verified_at": profile.verified_at.isoformat() if profile.verified_at else None,
            "changed_at": profile.verification_changed_at.isoformat()}


def document_json(document: VerificationDocument) -> dict[str, Any]:
    return {"id": str(document.id), "content_type": document.content_type, "size_bytes": document.size_bytes,
            "status": document.status, "reason": document.reason, "created_at": document.created_at.isoformat(),
            "reviewed_at": document.reviewed_at.isoformat() if document.reviewed_at else None}


def public_photo_json(profile: CleanerProfile) -> dict[str, Any] | None:
    """A cleaner's photo URLs as anyone sees them (the files are served once verified)."""
    return photo_urls(str(profile.user_id), path=profile.photo_path, processed_at=profile.photo_processed_at,
                      width=profile.photo_width, height=profile.photo_height,
                      thumbnails=profile.photo_thumbnails)


def photo_urls(cleaner_id: str, *, path: str | None, processed_at: datetime | None, width: int | None,
               height: int | None, thumbnails: dict[str, Any] | None) -> dict[str, Any] | None:
    """The photo block of a cleaner's public JSON (profile and search results), None without one."""
    if path is None:
        return None
    base = f"/api/v1/cleaners/{cleaner_id}/photo"
    # v changes with each new photo, so caches never show a replaced one under the same URL
    version = int(processed_at.timestamp() * 1000) if processed_at else 0
    return {"url": f"{base}?v={version}", "width": width, "height": height,
            "thumbnails": {size: f"{base}?size={size}&v={version}" for size in sorted(thumbnails or {}, key=int)}}


def own_photo_json(profile: CleanerProfile) -> dict[str, Any]:
    """The cleaner's own view: the latest upload's way through the images job, and what is shown."""
    return {"status": profile.photo_status, "refused_reason": profile.photo_refused_reason,
            "processed_at": profile.photo_processed_at.isoformat() if profile.photo_processed_at else None,
            "shown": public_photo_json(profile)}


def profile_json(view: supply.Profile) -> dict[str, Any]:
    profile = view.profile
    return {
        "id": str(view.user.id), "name": view.user.name, "bio": profile.bio, "photo": own_photo_json(profile),
        "time_zone": profile.time_zone, "travel_buffer_minutes": profile.travel_buffer_minutes,
        "services": [{"service_id": s.id, "name": s.name, "hourly_rate": money(rate, profile.currency)}
                     for s, rate in view.services],
        "verification": verification_json(profile),
        "rating": {"average": shown_average(profile.rating_avg, profile.rating_count), "count": profile.rating_count},
    }


def availability_json(availability: supply.Availability) -> dict[str, Any]:
    return {
        "time_zone": availability.time_zone,
        "weekly": [{"weekday": r.weekday, "start_minute": r.start_minute, "end_minute": r.end_minute}
                   for r in availability.rules],
        "exceptions": [{"date": e.day.isoformat(), "kind": e.kind, "start_minute": e.start_minute,
                        "end_minute": e.end_minute} for e in availability.exceptions],
    }


# --- uploads ---


def store_of(request: Request) -> FileStore:
    return file_store(settings_of(request))


async def read_upload(request: Request, *, field: str, max_bytes: int) -> bytes:
    """The one file sent as multipart form field `field`. Its name and declared type are ignored."""
    media_type, params = parse_content_header(request.headers.get("content-type", ""))
    if media_type != "multipart/form-data" or not params.get("boundary"):
        raise UnsupportedUpload(f"send the file as multipart/form-data in the field '{field}'",
                                code="unsupported_media_type")
    limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(f"{field} must be at most {max_bytes} bytes")
    request.stream.request_max_size = limit  # Sanic answers 413 while reading past this
    await request.receive_body()
    files = request.files.getlist(field) if request.files else None
    if not files:
        raise Invalid(f"attach the file as the multipart field '{field}'", field=field)
    if len(files) > 1:
        raise Invalid("send exactly one file", field=field)
    return files[0].body


# --- the public catalogue ---


@catalogue.get("/services")
@openapi.definition(summary="The active services clients can book, in display order", tag="supply")
@openapi.response(200, json_response(Catalogue), "the catalogue")
async def list_services(request: Request) -> HTTPResponse:
    services = await supply.list_services()
    # The catalogue is a short, curated list: one page, in the envelope every list answers with.
    return json({"data": [service_json(s) for s in services], "next_cursor": None},
                headers={"Cache-Control": "public, max-age=300"})


@catalogue.get("/cleaners/<cleaner_id:str>/photo")
@openapi.definition(summary="A verified cleaner's profile photo, or a WebP thumbnail with ?size= "
                            "(EXIF-free; 404 until processed)", tag="supply")
@openapi.response(200, IMAGE_FILE, "the EXIF-free photo (its own type), or a WebP thumbnail")
@openapi.parameter("size", str, "query", description="a thumbnail width the profile lists; omitted: the photo")
async def cleaner_photo(request: Request, cleaner_id: str) -> HTTPResponse:
    profile, content_type, data = await supply.read_public_photo(
        parse_uuid(cleaner_id, field="cleaner_id"), size=request.args.get("size"), store=store_of(request))
    return raw(data, content_type=content_type, headers={
        "Content-Disposition": f'inline; filename="{profile.user_id}{EXTENSIONS.get(content_type, "")}"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"})


# --- the cleaner's own profile, verification and availability ---


@cleaner.get("/profile")
@openapi.definition(summary="Your cleaner profile (created on first use)", tag="supply")
@openapi.response(200, json_response(ProfileAnswer), "your profile")
@authenticated(Role.CLEANER)
async def get_profile(request: Request) -> HTTPResponse:
    view = await supply.get_profile(actor=current_session(request).user)
    return json({"profile": profile_json(view)})


@cleaner.put("/profile")
@openapi.definition(summary="Change your bio, time zone, travel buffer or services and rates",
                    body=openapi_body(ProfileBody), tag="supply")
@openapi.response(200, json_response(ProfileAnswer), "your profile, changed")
@authenticated(Role.CLEANER)
async def put_profile(request: Request) -> HTTPResponse:
    body = parse_body(request, ProfileBody)
    services = None if body.services is None else [
        OfferedService(s.service_id, s.hourly_rate_minor) for s in body.services]
    view = await supply.update_profile(
        actor=current_session(request).user, settings=settings_of(request), bio=body.bio,
        time_zone=body.time_zone, travel_buffer_minutes=body.travel_buffer_minutes, services=services)
    return json({"profile": profile_json(view)})


@cleaner.post("/profile/photo", stream=True)
@openapi.definition(summary="Upload a profile photo (multipart field 'photo': JPEG, PNG or WebP)",
                    body=openapi_upload("photo", "the photo: JPEG, PNG or WebP"), tag="supply")
@openapi.response(200, json_response(ProfileAnswer), "your profile; the photo waits for processing")
@authenticated(Role.CLEANER)
async def upload_photo(request: Request) -> HTTPResponse:
    settings = settings_of(request)
    data = await read_upload(request, field="photo", max_bytes=settings.profile_photo_max_bytes)
    view = await supply.set_profile_photo(actor=current_session(request).user, data=data, settings=settings,
                                          store=store_of(request))
    return json({"profile": profile_json(view)})


@cleaner.get("/verification")
@openapi.definition(summary="Your verification status and the documents you sent", tag="supply")
@openapi.response(200, json_response(VerificationAnswer), "your verification and documents")
@authenticated(Role.CLEANER)
async def get_verification(request: Request) -> HTTPResponse:
    profile, documents = await supply.get_verification(actor=current_session(request).user)
    return json({"verification": verification_json(profile),
                 "documents": [document_json(d) for d in documents]})


@cleaner.post("/verification", stream=True)
@openapi.definition(summary="Send an identity document (multipart field 'document': JPEG, PNG, WebP or PDF)",
                    body=openapi_upload("document", "the document: JPEG, PNG, WebP or PDF"), tag="supply")
@openapi.response(201, json_response(DocumentSent), "the document, waiting for review")
@authenticated(Role.CLEANER)
async def submit_verification(request: Request) -> HTTPResponse:
    settings = settings_of(request)
    data = await read_upload(request, field="document", max_bytes=settings.verification_document_max_bytes)
    profile, document = await supply.submit_verification_document(
        actor=current_session(request).user, data=data, settings=settings, store=store_of(request))
    return json({"verification": verification_json(profile), "document": document_json(document)}, status=201)


@cleaner.get("/availability")
@openapi.definition(summary="Your weekly schedule and dated exceptions, in your time zone", tag="supply")
@openapi.response(200, json_response(AvailabilityAnswer), "your schedule")
@authenticated(Role.CLEANER)
async def get_availability(request: Request) -> HTTPResponse:
    availability = await supply.get_availability(actor=current_session(request).user)
    return json({"availability": availability_json(availability)})


def _exception(index: int, body: ExceptionBody) -> DatedException:
    try:
        day = date.fromisoformat(body.date)
    except ValueError:
        raise Invalid("must be a real date, YYYY-MM-DD", field=f"exceptions.{index}.date") from None
    return DatedException(day, body.kind, body.start_minute, body.end_minute)


@cleaner.put("/availability")
@openapi.definition(summary="Replace your weekly schedule and exceptions at once",
                    body=openapi_body(AvailabilityBody), tag="supply")
@openapi.response(200, json_response(AvailabilityAnswer), "your schedule, replaced")
@authenticated(Role.CLEANER)
async def put_availability(request: Request) -> HTTPResponse:
    body = parse_body(request, AvailabilityBody)
    availability = await supply.replace_availability(
        actor=current_session(request).user,
        rules=[WeeklyInterval(r.weekday, r.start_minute, r.end_minute) for r in body.weekly],
        exceptions=[_exception(i, e) for i, e in enumerate(body.exceptions)])
    return json({"availability": availability_json(availability)})


# --- staff: the review queue ---


@review.get("")
@openapi.definition(summary="Cleaners by verification status, longest-waiting first", tag="admin")
@openapi.response(200, json_response(ReviewQueuePage), "one page of cleaners")
@openapi.parameter("verification", RawSchema({"type": "string", "enum": list(VerificationStatus)}), "query",
                   description="the status to list; omitted: pending")
@paged
@authenticated(Role.ADMIN)
async def list_for_review(request: Request) -> HTTPResponse:
    entries, next_cursor = await supply.list_cleaners_for_review(
        actor=current_session(request).user, status=request.args.get("verification", "pending"),
        cursor=request.args.get("cursor"), limit=parse_limit(request.args.get("limit")))
    return json({"data": [{"id": str(e.user.id), "name": e.user.name, "email": e.user.email,
                               "created_at": e.profile.created_at.isoformat(),
                               "verification": verification_json(e.profile),
                               "documents": [document_json(d) for d in e.documents]} for e in entries],
                 "next_cursor": next_cursor})


@review.post("/<cleaner_id:str>/verification")
@openapi.definition(summary="Approve or reject a cleaner's pending verification (reason required to reject)",
                    body=openapi_body(DecisionBody), tag="admin")
@openapi.response(200, json_response(VerificationDecided), "the cleaner's verification, decided")
@authenticated(Role.ADMIN)
async def decide(request: Request, cleaner_id: str) -> HTTPResponse:
    target = parse_uuid(cleaner_id)
    body = parse_body(request, DecisionBody)
    profile = await supply.decide_verification(cleaner_id=target, decision=body.decision, reason=body.reason,
                                               actor=current_session(request).user)
    return json({"id": str(target), "verification": verification_json(profile)})


@review.get("/<cleaner_id:str>/verification/documents/<document_id:str>")
@openapi.definition(summary="Download an identity document (the read is audited)", tag="admin")
@openapi.response(200, DOCUMENT_FILE, "the document as it was sent")
@authenticated(Role.ADMIN)
async def download_document(request: Request, cleaner_id: str, document_id: str) -> HTTPResponse:
    document, data = await supply.read_verification_document(
        cleaner_id=parse_uuid(cleaner_id), document_id=parse_uuid(document_id, field="document_id"),
        actor=current_session(request).user, store=store_of(request))
    filename = f"{document.id}{EXTENSIONS.get(document.content_type, '')}"
    return raw(data, content_type=document.content_type, headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store"})
