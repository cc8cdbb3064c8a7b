"""Supply rules: profile fields, rates, time zones, verification decisions, uploads by content.

The file factories here are also used by tests/edge/test_supply.py.
"""

import io
import struct
import zlib

import pytest
from PIL import Image

from core.errors import Conflict, Invalid
from core.supply import (
    DOCUMENT_TYPES,
    IMAGE_TYPES,
    OfferedService,
    SupplyError,
    UnsupportedUpload,
    UploadTooLarge,
    VerificationStatus,
    check_bio,
    check_decision,
    check_may_submit_document,
    check_offered_services,
    check_time_zone,
    check_travel_buffer,
    check_upload,
)

# --- files, made here rather than shipped ---


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 140, 200)).save(out, format=fmt)
    return out.getvalue()


def pdf_bytes() -> bytes:
    return (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
            b"trailer << /Root 1 0 R >>\n%%EOF\n")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit PNG of width x height black pixels: kilobytes on the wire, gigabytes decoded."""
    row = b"\x00" + bytes((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


HTML = b"<!doctype html><html><script>alert(document.cookie)</script></html>"


# --- profile fields ---


def test_bios_are_trimmed_and_may_have_line_breaks_but_no_hidden_characters():
    assert check_bio("  Tidy and quick.\nPets welcome.  ") == "Tidy and quick.\nPets welcome."
    for bad in ["x" * 2001, "hello\u202eevil", "nul\x00"]:
        with pytest.raises(Invalid) as caught:
            check_bio(bad)
        assert caught.value.errors[0].field == "bio"


@pytest.mark.parametrize("zone", ["Europe/London", "America/Argentina/Buenos_Aires", "UTC", "Asia/Kolkata"])
def test_iana_zone_names_are_accepted(zone):
    assert check_time_zone(zone) == zone


@pytest.mark.parametrize("zone", ["", "GMT+1", "+01:00", "BST", "EST", "Etc/GMT+5", "europe/london",
                                  "../../etc/passwd", "Europe/London\x00", "Mars/Olympus_Mons"])
def test_anything_but_an_iana_zone_name_is_refused(zone):
    with pytest.raises(Invalid) as caught:
        check_time_zone(zone)
    assert caught.value.errors[0].field == "time_zone"


def test_travel_buffer_is_between_zero_and_four_hours():
    assert check_travel_buffer(0) == 0 and check_travel_buffer(240) == 240
    for bad in (-1, 241, True):
        with pytest.raises(Invalid):
            check_travel_buffer(bad)


RATES = dict(active_ids=frozenset({"standard", "deep"}), floor_minor=1300, ceiling_minor=50_000)


@pytest.mark.parametrize("offered, field, code", [
    ([OfferedService("standard", 1299)], "services.0.hourly_rate_minor", SupplyError.RATE_TOO_LOW),
    ([OfferedService("standard", 50_001)], "services.0.hourly_rate_minor", "invalid"),
    ([OfferedService("standard", 1500), OfferedService("retired", 1500)], "services.1.service_id",
     SupplyError.UNKNOWN_SERVICE),
    ([OfferedService("deep", 1500), OfferedService("deep", 1600)], "services.1.service_id", "invalid"),
])
def test_offered_services_must_exist_once_each_at_a_sensible_rate(offered, field, code):
    with pytest.raises(Invalid) as caught:
        check_offered_services(offered, **RATES)
    assert caught.value.errors[0].field == field and caught.value.code == code


def test_rates_at_the_floor_are_fine():
    offered = [OfferedService("standard", 1300), OfferedService("deep", 2500)]
    assert check_offered_services(offered, **RATES) == offered


# --- verification ---


def test_documents_may_be_sent_until_approved_and_only_a_few_at_a_time():
    for status in ("unsubmitted", "pending", "rejected"):
        check_may_submit_document(status, pending_documents=0, max_pending=5)
    with pytest.raises(Conflict) as caught:
        check_may_submit_document("approved", pending_documents=0, max_pending=5)
    assert caught.value.code == SupplyError.ALREADY_VERIFIED
    with pytest.raises(Conflict) as caught:
        check_may_submit_document("pending", pending_documents=5, max_pending=5)
    assert caught.value.code == SupplyError.TOO_MANY_DOCUMENTS


def test_a_pending_verification_is_approved_or_rejected_with_a_reason():
    assert check_decision("pending", decision="approve", reason="") == (VerificationStatus.APPROVED, None)
    assert check_decision("pending", decision="reject", reason=" blurry ") == (VerificationStatus.REJECTED,
                                                                              "blurry")
    with pytest.raises(Invalid) as caught:
        check_decision("pending", decision="reject", reason="   ")
    assert caught.value.errors[0].field == "reason"
    with pytest.raises(Invalid):
        check_decision("pending", decision="maybe", reason="")
    for status in ("unsubmitted", "approved", "rejected"):
        with pytest.raises(Conflict):
            check_decision(status, decision="approve", reason="")


# --- uploads, judged by their bytes ---

LIMITS = dict(max_bytes=1_000_000, max_pixels=1_000_000, field="document")


@pytest.mark.parametrize("data, content_type", [
    (image_bytes("JPEG"), "image/jpeg"), (image_bytes("PNG"), "image/png"),
    (image_bytes("WEBP"), "image/webp"), (pdf_bytes(), "application/pdf"),
])
def test_real_documents_are_recognised_by_content(data, content_type):
    assert check_upload(data, allowed=DOCUMENT_TYPES, **LIMITS) == content_type


@pytest.mark.parametrize("data", [HTML, b"GIF89a" + bytes(20), b"PK\x03\x04zip", b"MZ\x90\x00exe", b"\x00" * 10])
def test_other_content_is_415_whatever_it_is_called(data):
    with pytest.raises(UnsupportedUpload):
        check_upload(data, allowed=DOCUMENT_TYPES, **LIMITS)


def test_a_pdf_is_not_a_profile_photo():
    with pytest.raises(UnsupportedUpload):
        check_upload(pdf_bytes(), allowed=IMAGE_TYPES, **LIMITS)


def test_too_many_bytes_is_413_and_none_is_422():
    with pytest.raises(UploadTooLarge):
        check_upload(pdf_bytes() + bytes(1_000_000), allowed=DOCUMENT_TYPES, **LIMITS)
    with pytest.raises(Invalid):
        check_upload(b"", allowed=DOCUMENT_TYPES, **LIMITS)


@pytest.mark.parametrize("size", [(1200, 1000), (1500, 1500), (20_000, 20_000)])
def test_decompression_bombs_are_refused_from_the_header(size):
    # just over the limit (Pillow warns), over twice the limit (Pillow raises), and a real bomb
    with pytest.raises(Invalid) as caught:
        check_upload(png_bomb(*size), allowed=DOCUMENT_TYPES, **LIMITS)
    assert caught.value.code == SupplyError.IMAGE_TOO_LARGE
    assert Image.MAX_IMAGE_PIXELS != LIMITS["max_pixels"]  # Pillow's global is left as it was


def test_damaged_and_hostile_images_are_422_never_a_crash():
    png = image_bytes("PNG")
    jpeg = image_bytes("JPEG")
    damaged = [png[:40], png[:-20] + bytes(20), png[:16] + b"\xff" * 8 + png[24:], b"\x89PNG\r\n\x1a\n",
               b"RIFF\x00\x00\x00\x00WEBPVP8 ", jpeg[:3]]
    damaged += [png[:i] + bytes([png[i] ^ 0xFF]) + png[i + 1:] for i in range(8, len(png), 7)]
    for data in damaged:
        try:
            check_upload(data, allowed=DOCUMENT_TYPES, **LIMITS)
        except Invalid as exc:
            assert exc.code in (SupplyError.DAMAGED_FILE, SupplyError.IMAGE_TOO_LARGE)


@pytest.mark.parametrize(("data", "why"), [
    (pdf_bytes() + b"PK\x03\x04" + b"\0" * 40 + b"PK\x05\x06" + b"\0" * 18, "data after its end"),
    (pdf_bytes().replace(b"trailer", b"PK\x05\x06" + b"\0" * 18 + b"\ntrailer"), "also a zip archive"),
    (pdf_bytes()[:-8], "data after its end"),
])
def test_a_pdf_that_is_not_only_a_pdf_is_refused(data, why):
    with pytest.raises(Invalid, match=why) as caught:
        check_upload(data, allowed=DOCUMENT_TYPES, max_bytes=1 << 20, max_pixels=10_000, field="document")
    assert [e.field for e in caught.value.errors] == ["document"]


def test_a_plain_pdf_with_trailing_newlines_is_accepted():
    assert check_upload(pdf_bytes() + b"\r\n\n", allowed=DOCUMENT_TYPES, max_bytes=1 << 20,
                        max_pixels=10_000, field="document") == "application/pdf"
