"""Hostile files at every upload endpoint: decompression bombs, polyglots, scripts wearing an
image's extension, path traversal in names, and bodies over the limit. Each is a 4xx problem,
and nothing the client named reaches the disk."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Account, register
from tests.core.test_supply import HTML, image_bytes, pdf_bytes, png_bomb
from tests.edge.test_bookings import bookable, booking_body
from tests.storage.test_bookings import starting_soon

PHP = b"<?php system($_GET['c']); ?>"


def zip_archive() -> bytes:
    """A small zip whose one member inflates to 50 MB of zeros: a zip bomb in miniature."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("payload.bin", b"\0" * 50_000_000)
    return buffer.getvalue()


def polyglot(head: bytes) -> bytes:
    """A valid file of one kind that is also a zip archive (readers look at opposite ends)."""
    return head + zip_archive()


@dataclass
class UploadEndpoint:
    name: str
    field: str
    accepts_pdf: bool
    url: str
    auth: dict[str, str]


@pytest.fixture(scope="module")
def api(edge) -> httpx.Client:
    with httpx.Client(base_url=edge.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
async def endpoints(api, db, settings) -> dict[str, UploadEndpoint]:
    """Every upload endpoint, with a caller allowed to use it."""
    def make_account(**kwargs) -> Account:
        return register(api, **kwargs)

    cleaner = make_account(role="cleaner")
    worker, client = await bookable(make_account, settings), make_account(role="client")
    booking = api.post("/api/v1/bookings", headers=client.auth, json=booking_body(worker, starting_soon()))
    assert booking.status_code == 201, booking.text
    booking_id = booking.json()["booking"]["id"]
    for move in ("accept", "on-the-way", "start"):  # evidence is taken while the job (starting soon) is in progress
        assert api.post(f"/api/v1/bookings/{booking_id}/{move}", headers=worker.auth).status_code == 200
    found = {
        "verification document": UploadEndpoint("verification document", "document", True,
                                                "/api/v1/cleaner/verification", cleaner.auth),
        "profile photo": UploadEndpoint("profile photo", "photo", False, "/api/v1/cleaner/profile/photo",
                                        cleaner.auth),
        "evidence photo": UploadEndpoint("evidence photo", "photo", False,
                                         f"/api/v1/bookings/{booking_id}/evidence", worker.auth),
        "chat attachment": UploadEndpoint("chat attachment", "file", False,
                                          f"/api/v1/conversations/{booking_id}/attachments", client.auth),
    }
    return found


ENDPOINTS = ["verification document", "profile photo", "evidence photo", "chat attachment"]


def upload(api: httpx.Client, endpoint: UploadEndpoint, data: bytes, *, name: str, declared: str) -> httpx.Response:
    return api.post(endpoint.url, headers=endpoint.auth, files={endpoint.field: (name, data, declared)})


def assert_problem(response: httpx.Response, statuses: set[int], what: str) -> dict:
    assert response.status_code in statuses, f"{what}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/problem+json"), what
    body = response.json()
    assert body["status"] == response.status_code and body["detail"] and body["code"], body
    return body


HOSTILE: dict[str, tuple[Callable[[], bytes], str, str, set[int]]] = {
    # name: (content, file name, declared type, acceptable statuses)
    "a decompression bomb (20000x20000 PNG)": (lambda: png_bomb(20_000, 20_000), "photo.png", "image/png", {422}),
    "a zip bomb": (zip_archive, "photos.zip", "application/zip", {415}),
    "a zip bomb named .jpg": (zip_archive, "photo.jpg", "image/jpeg", {415}),
    "PHP named .jpg": (lambda: PHP, "avatar.jpg", "image/jpeg", {415}),
    "HTML named .png": (lambda: HTML, "avatar.png", "image/png", {415}),
    "JPEG magic followed by HTML": (lambda: b"\xff\xd8\xff\xe0" + HTML, "avatar.jpg", "image/jpeg", {422}),
    "a truncated PNG": (lambda: image_bytes("PNG")[:60], "avatar.png", "image/png", {422}),
    "an empty file": (lambda: b"", "empty.png", "image/png", {422}),
}


@pytest.mark.parametrize("endpoint_name", ENDPOINTS)
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_are_refused_with_a_problem(api, endpoints, endpoint_name, case):
    endpoint = endpoints[endpoint_name]
    make, name, declared, statuses = HOSTILE[case]
    # when the file is sent, then it is refused with a 4xx problem naming why
    assert_problem(upload(api, endpoint, make(), name=name, declared=declared), statuses, f"{case} at {endpoint_name}")


@pytest.mark.parametrize("endpoint_name", ENDPOINTS)
def test_a_pdf_is_refused_where_only_images_go(api, endpoints, endpoint_name):
    endpoint = endpoints[endpoint_name]
    response = upload(api, endpoint, pdf_bytes(), name="photo.jpg", declared="image/jpeg")
    if endpoint.accepts_pdf:
        assert response.status_code == 201, response.text
    else:
        assert_problem(response, {415}, endpoint_name)


def test_a_pdf_that_is_also_a_zip_archive_is_refused(api, endpoints):
    endpoint = endpoints["verification document"]
    assert_problem(upload(api, endpoint, polyglot(pdf_bytes()), name="passport.pdf", declared="application/pdf"),
                   {415, 422}, "PDF/ZIP polyglot")


@pytest.mark.parametrize("endpoint_name", ENDPOINTS)
@pytest.mark.parametrize("name", ["../../etc/passwd", "..\\..\\windows\\win.ini", "/etc/passwd",
                                  "photo.png\x00.php", "....//....//tmp/x.png", "%2e%2e%2fescape.png"])
def test_a_hostile_file_name_goes_nowhere(api, endpoints, settings, endpoint_name, name):
    endpoint = endpoints[endpoint_name]
    storage_root = Path(settings.file_storage_path).resolve()
    before = {p for p in storage_root.parent.rglob("*")} if storage_root.parent.exists() else set()
    # when a valid image is sent under a name that tries to leave the storage folder
    response = upload(api, endpoint, image_bytes("PNG"), name=name, declared="image/png")
    # then it is taken or refused, never a 5xx, and its name appears nowhere in the answer
    assert response.status_code < 500, response.text
    assert "passwd" not in response.text and "win.ini" not in response.text and ".." not in response.text
    # and every file written since is inside the storage folder
    after = {p for p in storage_root.parent.rglob("*")} if storage_root.parent.exists() else set()
    for path in after - before:
        assert path.resolve().is_relative_to(storage_root.parent), path
    assert not Path("/etc/passwd.png").exists() and not Path("/tmp/x.png").exists()


@pytest.mark.parametrize("endpoint_name", ENDPOINTS)
def test_an_upload_over_the_limit_is_a_413_problem(api, endpoints, settings, endpoint_name):
    endpoint = endpoints[endpoint_name]
    too_big = b"\x89PNG\r\n\x1a\n" + b"\0" * (max(settings.verification_document_max_bytes,
                                                  settings.profile_photo_max_bytes,
                                                  settings.evidence_photo_max_bytes,
                                                  settings.chat_attachment_max_bytes) + 64 * 1024)
    body = assert_problem(upload(api, endpoint, too_big, name="huge.png", declared="image/png"), {413}, endpoint_name)
    assert "bytes" in body["detail"]


@pytest.mark.parametrize("method, path", [("POST", "/api/v1/auth/login"), ("PUT", "/api/v1/cleaner/profile"),
                                          ("POST", "/api/v1/bookings")])
def test_a_json_body_over_the_limit_is_a_413_problem_not_a_page(api, settings, method, path):
    huge = b'{"email": "' + b"a" * (settings.max_body_bytes + 1024) + b'"}'
    response = api.request(method, path, content=huge, headers={"Content-Type": "application/json"})
    body = assert_problem(response, {413}, path)
    assert body["code"] == "payload_too_large" and body["request_id"] == response.headers["x-request-id"]
