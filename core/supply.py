"""Cleaner supply rules: profile fields, hourly rates, time zones, verification, uploaded files.

Pure, no I/O: every function takes what it judges and returns a verdict or raises a
core.errors exception naming the field. Uploaded files are judged by their bytes, never by
their name or declared content type.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from zoneinfo import available_timezones

from PIL import Image

from core.errors import Conflict, Invalid, SpotlessError

MAX_BIO_LENGTH = 2000
MAX_TRAVEL_BUFFER_MINUTES = 240
MAX_OFFERED_SERVICES = 20
MAX_REASON_LENGTH = 1000


class SupplyError(StrEnum):
    RATE_TOO_LOW = "rate_too_low"
    UNKNOWN_SERVICE = "unknown_service"
    ALREADY_VERIFIED = "already_verified"
    NOT_PENDING = "verification_not_pending"
    TOO_MANY_DOCUMENTS = "too_many_documents"
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_FILE_TYPE = "unsupported_file_type"
    DAMAGED_FILE = "damaged_file"
    IMAGE_TOO_LARGE = "image_too_large"


class VerificationStatus(StrEnum):
    UNSUBMITTED = "unsubmitted"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class UploadTooLarge(SpotlessError):
    status = 413
    code = SupplyError.FILE_TOO_LARGE
    title = "The file is too large"


class UnsupportedUpload(SpotlessError):
    status = 415
    code = SupplyError.UNSUPPORTED_FILE_TYPE
    title = "This kind of file is not accepted"


# --- profile fields ---


def check_bio(raw: str) -> str:
    bio = unicodedata.normalize("NFC", raw).strip()
    if len(bio) > MAX_BIO_LENGTH:
        raise Invalid(f"must be at most {MAX_BIO_LENGTH} characters", field="bio")
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} and ch not in "\n\t" for ch in bio):
        raise Invalid("must not contain control or invisible characters", field="bio")
    return bio


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # Area/Location names only: "Etc/GMT+5" (sign inverted), "EST" and such legacy aliases
    # confuse more than they help; UTC stays for cleaners who really want it.
    names = {n for n in available_timezones() if "/" in n and not n.startswith(("Etc/", "SystemV/"))}
    return frozenset(names | {"UTC"})


def check_time_zone(raw: str) -> str:
    """An IANA zone name such as "Europe/London"; raise Invalid otherwise."""
    if raw not in _zone_names():
        raise Invalid("must be an IANA time zone name such as Europe/London", field="time_zone")
    return raw


def check_travel_buffer(minutes: int) -> int:
    if isinstance(minutes, bool) or not 0 <= minutes <= MAX_TRAVEL_BUFFER_MINUTES:
        raise Invalid(f"must be between 0 and {MAX_TRAVEL_BUFFER_MINUTES}", field="travel_buffer_minutes")
    return minutes


@dataclass(frozen=True)
class OfferedService:
    service_id: str
    hourly_rate_minor: int


def check_offered_services(
    offered: Sequence[OfferedService], *, active_ids: frozenset[str], floor_minor: int, ceiling_minor: int,
    field: str = "services",
) -> list[OfferedService]:
    """Each service exists and is active, appears once, and has a rate within [floor, ceiling]."""
    if len(offered) > MAX_OFFERED_SERVICES:
        raise Invalid(f"at most {MAX_OFFERED_SERVICES} services", field=field)
    seen: set[str] = set()
    for index, item in enumerate(offered):
        where = f"{field}.{index}"
        if item.service_id not in active_ids:
            raise Invalid("is not a service we offer", field=f"{where}.service_id",
                          code=SupplyError.UNKNOWN_SERVICE)
        if item.service_id in seen:
            raise Invalid("is listed twice", field=f"{where}.service_id")
        seen.add(item.service_id)
        rate = item.hourly_rate_minor
        if isinstance(rate, bool) or rate < floor_minor:
            raise Invalid(f"must be at least {floor_minor} (minor units per hour)",
                          field=f"{where}.hourly_rate_minor", code=SupplyError.RATE_TOO_LOW)
        if rate > ceiling_minor:
            raise Invalid(f"must be at most {ceiling_minor} (minor units per hour)",
                          field=f"{where}.hourly_rate_minor")
    return list(offered)


# --- verification ---


def check_may_submit_document(status: str, *, pending_documents: int, max_pending: int) -> None:
    """A cleaner may send documents until approved, a bounded number while a review is pending."""
    if status == VerificationStatus.APPROVED:
        raise Conflict("your identity is already verified", code=SupplyError.ALREADY_VERIFIED)
    if pending_documents >= max_pending:
        raise Conflict(f"at most {max_pending} documents may wait for review",
                       code=SupplyError.TOO_MANY_DOCUMENTS)


def check_decision(status: str, *, decision: str, reason: str) -> tuple[VerificationStatus, str | None]:
    """The status a staff decision leads to, and the reason to keep (required on rejection)."""
    if decision not in ("approve", "reject"):
        raise Invalid("must be 'approve' or 'reject'", field="decision")
    reason = unicodedata.normalize("NFC", reason).strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise Invalid(f"must be at most {MAX_REASON_LENGTH} characters", field="reason")
    if decision == "reject" and not reason:
        raise Invalid("say why, so that the cleaner knows what to send instead", field="reason")
    if status != VerificationStatus.PENDING:
        raise Conflict(f"there is nothing to decide: verification is {status}", code=SupplyError.NOT_PENDING)
    if decision == "approve":
        return VerificationStatus.APPROVED, reason or None
    return VerificationStatus.REJECTED, reason


# --- uploaded files, judged by content ---

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
DOCUMENT_TYPES = IMAGE_TYPES | {"application/pdf"}
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "application/pdf": ".pdf"}
_PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


def sniff_type(data: bytes) -> str | None:
    """The content type the leading bytes prove, among those we accept; None otherwise."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def check_upload(data: bytes, *, allowed: frozenset[str], max_bytes: int, max_pixels: int,
                 field: str) -> str:
    """Return the content type of an accepted file; raise 413, 415 or 422 (naming `field`).

    Images are opened and verified with Pillow, and refused when they have more than
    `max_pixels` pixels (a decompression bomb is small on the wire and huge in memory).
    CPU-bound: call it from an executor.
    """
    if len(data) > max_bytes:
        raise UploadTooLarge(f"{field} must be at most {max_bytes} bytes")
    if not data:
        raise Invalid("the file is empty", field=field)
    content_type = sniff_type(data)
    if content_type not in allowed:
        kinds = ", ".join(sorted(EXTENSIONS[t].lstrip(".").upper() for t in allowed))
        raise UnsupportedUpload(f"{field} must be one of: {kinds} (judged by the file's content)")
    if content_type in IMAGE_TYPES:
        _verify_image(data, expected=_PILLOW_FORMATS[content_type], max_pixels=max_pixels, field=field)
    elif content_type == "application/pdf":
        _verify_pdf(data, field=field)
    return content_type


# A zip reader starts from the end-of-central-directory record at the end of a file, a PDF reader
# from the header at its start: a file with both is two files in one, and is stored as uploaded.
_ZIP_END_OF_DIRECTORY = b"PK\x05\x06"


def _verify_pdf(data: bytes, *, field: str) -> None:
    """Refuse a PDF that does not end as a PDF, or that is also a zip archive (a polyglot)."""
    if not data.rstrip(b"\r\n\t \0").endswith(b"%%EOF"):
        raise Invalid("the PDF is damaged or carries data after its end", field=field,
                      code=SupplyError.DAMAGED_FILE)
    if _ZIP_END_OF_DIRECTORY in data:
        raise Invalid("the PDF is also a zip archive; upload a plain PDF", field=field,
                      code=SupplyError.DAMAGED_FILE)


def _verify_image(data: bytes, *, expected: str, max_pixels: int, field: str) -> None:
    too_large = Invalid(f"the image must have at most {max_pixels} pixels", field=field,
                        code=SupplyError.IMAGE_TOO_LARGE)
    # Pillow's own guard reads MAX_IMAGE_PIXELS when it parses the header: it raises above twice
    # the limit and warns above it. The explicit check refuses everything above the limit
    # whichever way Pillow reacted (and whatever another thread left in the global meanwhile).
    # Nothing here decodes pixels: open reads the header, verify checks chunks and checksums.
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
    try:
        with Image.open(io.BytesIO(data), formats=[expected]) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise too_large
            image.verify()
    except Invalid:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_large from None
    except Exception as exc:  # hostile bytes can trip any of Pillow's parsers' errors
        raise Invalid("the image is damaged or not what its first bytes claim", field=field,
                      code=SupplyError.DAMAGED_FILE) from exc
    finally:
        Image.MAX_IMAGE_PIXELS = previous
