"""Completion evidence over REST: the booking's cleaner uploads photos while at work; both
parties and staff list them and download the processed files. Thin handlers over
storage/evidence.py; who may do what is core/evidence.py's call, who may see a booking is
core/bookings.py's (a stranger gets 404)."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from core.pagination import parse_limit
from core.supply import EXTENSIONS
from edge.accounts import settings_of
from edge.auth import authenticated, current_session
from edge.responses import IMAGE_FILE, EvidenceAnswer, EvidencePage, json_response
from edge.staff import parse_uuid
from edge.supply import read_upload, store_of
from edge.validation import openapi_upload, paged
from storage import evidence as evidence_store
from storage.models import BookingEvidence

bp = Blueprint("evidence", url_prefix="/api/v1/bookings")


def evidence_json(row: BookingEvidence) -> dict[str, Any]:
    """A photo as the apps show it; file URLs once the images job has made safe copies."""
    base = f"/api/v1/bookings/{row.booking_id}/evidence/{row.id}/file"
    ready = row.status == "ready"
    return {
        "id": str(row.id), "booking_id": str(row.booking_id), "status": row.status,
        "content_type": row.content_type, "size_bytes": row.size_bytes,
        "width": row.width, "height": row.height,
        "captured_at": row.captured_at.isoformat() if row.captured_at else None,
        "location": {"lat": row.gps_lat, "lng": row.gps_lng} if row.gps_lat is not None else None,
        "refused_reason": row.refused_reason,
        "created_at": row.created_at.isoformat(),
        "processed_at": row.processed_at.isoformat() if row.processed_at else None,
        "url": base if ready else None,
        "thumbnails": {size: f"{base}?size={size}" for size in sorted(row.thumbnails, key=int)} if ready else {},
    }


@bp.post("/<booking_id:str>/evidence", stream=True)
@openapi.definition(summary="Add a completion photo (multipart field 'photo': JPEG, PNG or WebP) while the "
                            "booking is in progress; the booking's cleaner only",
                    body=openapi_upload("photo", "the photo: JPEG, PNG or WebP"), tag="bookings")
@openapi.response(201, json_response(EvidenceAnswer), "stored; waits for processing")
@authenticated()
async def upload(request: Request, booking_id: str) -> HTTPResponse:
    settings, user = settings_of(request), current_session(request).user
    target = parse_uuid(booking_id)
    await evidence_store.check_may_add(target, actor=user, settings=settings)  # before reading the body
    data = await read_upload(request, field="photo", max_bytes=settings.evidence_photo_max_bytes)
    row = await evidence_store.add_evidence(target, actor=user, data=data,
                                           settings=settings, store=store_of(request))
    return json({"evidence": evidence_json(row)}, status=201)


@bp.get("/<booking_id:str>/evidence")
@openapi.definition(summary="A booking's completion photos, oldest first, with thumbnail URLs once "
                            "processed (parties and staff)", tag="bookings")
@openapi.response(200, json_response(EvidencePage), "one page of photos")
@paged
@authenticated()
async def list_evidence(request: Request, booking_id: str) -> HTTPResponse:
    rows, next_cursor = await evidence_store.list_evidence(
        parse_uuid(booking_id), actor=current_session(request).user, cursor=request.args.get("cursor"),
        limit=parse_limit(request.args.get("limit")))
    return json({"data": [evidence_json(r) for r in rows], "next_cursor": next_cursor})


@bp.get("/<booking_id:str>/evidence/<evidence_id:str>/file")
@openapi.definition(summary="Download a processed completion photo, or a WebP thumbnail with ?size= "
                            "(parties and staff)", tag="bookings")
@openapi.response(200, IMAGE_FILE, "the EXIF-free photo (its own type), or a WebP thumbnail")
@openapi.parameter("size", str, "query", description="a thumbnail width the photo lists; omitted: the photo")
@authenticated()
async def download(request: Request, booking_id: str, evidence_id: str) -> HTTPResponse:
    row, content_type, data = await evidence_store.read_evidence_file(
        parse_uuid(booking_id), parse_uuid(evidence_id, field="evidence_id"),
        actor=current_session(request).user, size=request.args.get("size"), store=store_of(request))
    return raw(data, content_type=content_type, headers={
        "Content-Disposition": f'inline; filename="{row.id}{EXTENSIONS.get(content_type, "")}"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})
