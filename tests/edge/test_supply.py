"""Cleaner supply over HTTP: catalogue, profile, uploads, availability, and the staff review queue."""

from datetime import date, timedelta

import pytest
from tortoise import connections

from core.clock import utcnow
from storage import accounts
from storage.models import AuditLog, CleanerProfile, OutboxEvent, ServiceType, VerificationDocument
from tests.conftest import STRONG_PASSWORD, unique_email
from tests.core.test_supply import HTML, image_bytes, pdf_bytes, png_bomb


def assert_problem(response, status, *, field=None, code=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    if code is not None:
        assert body["code"] == code, body
    return body


async def make_staff(api, settings) -> dict[str, str]:
    email = unique_email("staff")
    await accounts.create_user(email=email, password=STRONG_PASSWORD, name="Rev Iewer", role="admin",
                               settings=settings, verified=True)
    login = api.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    return {"Authorization": f"Bearer {login.json()['token']}"}


def upload_document(api, account, data, *, name="passport.png", declared="image/png"):
    return api.post("/api/v1/cleaner/verification", headers=account.auth,
                    files={"document": (name, data, declared)})


# --- catalogue ---


def test_anyone_can_read_the_service_catalogue_in_order(api):
    response = api.get("/api/v1/services")
    assert response.status_code == 200
    services = response.json()["data"]
    assert response.json()["next_cursor"] is None
    assert [s["id"] for s in services][:3] == ["standard", "deep", "end_of_tenancy"]
    assert services[0]["price"] == {"amount_minor": 1800, "currency": "GBP"}
    assert services[0]["min_duration_minutes"] == 120


def test_the_supply_endpoints_are_in_the_openapi_document(api):
    spec = api.get("/api/v1/docs/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in ("/api/v1/services", "/api/v1/cleaner/profile", "/api/v1/cleaner/availability",
                 "/api/v1/cleaner/verification", "/api/v1/admin/cleaners"):
        assert path in paths, sorted(paths)


# --- the cleaner's profile ---


def test_a_cleaner_gets_a_profile_on_first_visit_and_can_fill_it_in(api, make_account):
    # given a new cleaner
    cleaner = make_account(role="cleaner")
    # when they open their profile
    first = api.get("/api/v1/cleaner/profile", headers=cleaner.auth)
    # then it exists with defaults, unverified and unrated
    assert first.status_code == 200, first.text
    profile = first.json()["profile"]
    assert profile["id"] == cleaner.id and profile["services"] == []
    assert profile["verification"]["status"] == "unsubmitted"
    assert profile["rating"] == {"average": None, "count": 0}
    # when they describe themselves and price two services
    response = api.put("/api/v1/cleaner/profile", headers=cleaner.auth, json={
        "bio": "Ten years of spotless kitchens.", "time_zone": "Europe/Dublin", "travel_buffer_minutes": 45,
        "services": [{"service_id": "deep", "hourly_rate_minor": 2500},
                     {"service_id": "standard", "hourly_rate_minor": 1900}]})
    # then the profile says so, services in catalogue order with money as minor units
    assert response.status_code == 200, response.text
    saved = api.get("/api/v1/cleaner/profile", headers=cleaner.auth).json()["profile"]
    assert saved == response.json()["profile"]
    assert saved["bio"] == "Ten years of spotless kitchens." and saved["time_zone"] == "Europe/Dublin"
    assert saved["travel_buffer_minutes"] == 45
    assert [(s["service_id"], s["hourly_rate"]) for s in saved["services"]] == [
        ("standard", {"amount_minor": 1900, "currency": "GBP"}), ("deep", {"amount_minor": 2500, "currency": "GBP"})]
    # and leaving a field out keeps it
    api.put("/api/v1/cleaner/profile", headers=cleaner.auth, json={"bio": "Now with steam cleaner."})
    again = api.get("/api/v1/cleaner/profile", headers=cleaner.auth).json()["profile"]
    assert again["bio"] == "Now with steam cleaner." and len(again["services"]) == 2


@pytest.mark.parametrize("body, field", [
    ({"services": [{"service_id": "standard", "hourly_rate_minor": 500}]}, "services.0.hourly_rate_minor"),
    ({"services": [{"service_id": "window_cleaning", "hourly_rate_minor": 2000}]}, "services.0.service_id"),
    ({"services": [{"service_id": "standard", "hourly_rate_minor": "2000"}]}, "services.0.hourly_rate_minor"),
    ({"time_zone": "GMT+1"}, "time_zone"),
    ({"time_zone": "../../../etc/passwd"}, "time_zone"),
    ({"travel_buffer_minutes": 241}, "travel_buffer_minutes"),
    ({"travel_buffer_minutes": -5}, "travel_buffer_minutes"),
    ({"bio": "x" * 3000}, "bio"),
    ({"verification_status": "approved"}, "verification_status"),
    ({"rating_avg": 5}, "rating_avg"),
])
def test_bad_profile_changes_are_422_naming_the_field_and_change_nothing(api, make_account, body, field):
    cleaner = make_account(role="cleaner")
    response = api.put("/api/v1/cleaner/profile", headers=cleaner.auth, json={"bio": "changed", **body})
    assert_problem(response, 422, field=field)
    profile = api.get("/api/v1/cleaner/profile", headers=cleaner.auth).json()["profile"]
    assert profile["bio"] == "" and profile["verification"]["status"] == "unsubmitted"


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/cleaner/profile"), ("PUT", "/api/v1/cleaner/profile"),
    ("GET", "/api/v1/cleaner/availability"), ("PUT", "/api/v1/cleaner/availability"),
    ("GET", "/api/v1/cleaner/verification"), ("POST", "/api/v1/cleaner/verification"),
    ("POST", "/api/v1/cleaner/profile/photo"),
])
def test_clients_cannot_use_cleaner_endpoints_and_strangers_must_sign_in(api, make_account, method, path):
    client = make_account(role="client")
    body = assert_problem(api.request(method, path, headers=client.auth, json={}), 403, code="wrong_role")
    assert "cleaner" in body["detail"]
    assert_problem(api.request(method, path, json={}), 401)


async def test_a_profile_photo_is_an_image_checked_by_content(api, db, make_account, settings):
    async def waiting() -> str | None:
        return (await CleanerProfile.get(user_id=cleaner.id)).photo_upload_key

    cleaner = make_account(role="cleaner")
    photo = image_bytes("WEBP", (320, 320))
    response = api.post("/api/v1/cleaner/profile/photo", headers=cleaner.auth,
                        files={"photo": ("../../me.exe", photo, "application/octet-stream")})
    assert response.status_code == 200, response.text
    assert response.json()["profile"]["photo"]["status"] == "processing"
    key = await waiting()
    assert key.startswith("profile-photos/") and key.endswith(".webp") and "me" not in key
    assert (settings.file_storage_path / key).read_bytes() == photo
    # a "photo" that is really a PDF is refused, and the upload before it still waits
    fake = api.post("/api/v1/cleaner/profile/photo", headers=cleaner.auth,
                    files={"photo": ("selfie.jpg", pdf_bytes(), "image/jpeg")})
    assert_problem(fake, 415, code="unsupported_file_type")
    assert await waiting() == key
    # a newer photo supersedes one still waiting for the images job: that original is deleted
    newer = api.post("/api/v1/cleaner/profile/photo", headers=cleaner.auth,
                     files={"photo": ("a.png", image_bytes("PNG"), "image/png")})
    assert newer.status_code == 200, newer.text
    assert await waiting() != key and not (settings.file_storage_path / key).exists()
    assert "photo_path" not in newer.json()["profile"]  # storage keys never leave the server


# --- identity verification ---


async def test_a_document_goes_to_review_and_is_stored_under_a_key_we_chose(api, db, make_account, settings):
    # given a cleaner
    cleaner = make_account(role="cleaner")
    # when they upload a scan whose name tries to escape the storage folder
    scan = image_bytes("PNG", (800, 600))
    response = upload_document(api, cleaner, scan, name="../../../../tmp/owned.png")
    # then it is pending review, and the file sits under our own key with the content's type
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["verification"]["status"] == "pending"
    assert body["document"]["content_type"] == "image/png" and body["document"]["size_bytes"] == len(scan)
    document = await VerificationDocument.get(id=body["document"]["id"])
    assert document.storage_key.startswith("identity-documents/") and "owned" not in document.storage_key
    assert (settings.file_storage_path / document.storage_key).read_bytes() == scan
    assert api.get("/api/v1/cleaner/profile", headers=cleaner.auth).json()["profile"]["verification"][
        "status"] == "pending"
    own = api.get("/api/v1/cleaner/verification", headers=cleaner.auth).json()
    assert [d["id"] for d in own["documents"]] == [body["document"]["id"]]
    # and staff hear about it through the outbox
    assert await OutboxEvent.filter(type="cleaner.verification_submitted",
                                    payload__contains={"cleaner_id": cleaner.id}).exists()


async def test_the_type_comes_from_the_content_not_the_name(api, db, make_account):
    cleaner = make_account(role="cleaner")
    # a .jpg declared as JPEG that is really a PDF is kept as the PDF it is
    response = upload_document(api, cleaner, pdf_bytes(), name="passport.jpg", declared="image/jpeg")
    assert response.status_code == 201 and response.json()["document"]["content_type"] == "application/pdf"
    # an HTML page dressed as an image is refused
    assert_problem(upload_document(api, cleaner, HTML, name="passport.png", declared="image/png"), 415,
                   code="unsupported_file_type")


async def test_refused_uploads_leave_nothing_behind(api, db, make_account, settings):
    cleaner = make_account(role="cleaner")
    files_before = sorted(settings.file_storage_path.rglob("*")) if settings.file_storage_path.exists() else []
    # a decompression bomb: a few kilobytes that would decode to 400 million pixels
    bomb = png_bomb(20_000, 20_000)
    assert len(bomb) < 200_000
    assert_problem(upload_document(api, cleaner, bomb), 422, field="document", code="image_too_large")
    # a PNG that is damaged after its signature
    assert_problem(upload_document(api, cleaner, image_bytes("PNG")[:60]), 422, field="document",
                   code="damaged_file")
    # a file over the limit
    huge = pdf_bytes() + bytes(settings.verification_document_max_bytes)
    assert_problem(upload_document(api, cleaner, huge, name="big.pdf"), 413)
    # then no document row, no status change and no new file
    assert not await VerificationDocument.filter(cleaner_id=cleaner.id).exists()
    profile = api.get("/api/v1/cleaner/profile", headers=cleaner.auth).json()["profile"]
    assert profile["verification"]["status"] == "unsubmitted"
    files_after = sorted(settings.file_storage_path.rglob("*")) if settings.file_storage_path.exists() else []
    assert files_after == files_before


@pytest.mark.parametrize("request_kwargs, status, field", [
    ({"json": {"document": "aGVsbG8="}}, 415, None),
    ({"content": b"raw bytes", "headers": {"Content-Type": "image/png"}}, 415, None),
    ({"files": {"passport": ("p.png", b"x", "image/png")}}, 422, "document"),
    ({"data": {"document": "not a file"}, "files": {"other": ("o.txt", b"x", "text/plain")}}, 422, "document"),
    ({"files": [("document", ("a.pdf", b"%PDF-1.4 a", "application/pdf")),
                ("document", ("b.pdf", b"%PDF-1.4 b", "application/pdf"))]}, 422, "document"),
    ({"content": b"--x\r\nContent-Disposition: form-data; name=\"document\"; filename=\"a\"\r\n\r\n%PDF",
      "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, None, None),
    ({"content": b"\xff\xfe garbage", "headers": {"Content-Type": "multipart/form-data; boundary=zz"}}, 422,
     "document"),
    ({"content": b"x", "headers": {"Content-Type": "multipart/form-data"}}, 415, None),
])
def test_malformed_uploads_are_4xx_problems(api, make_account, request_kwargs, status, field):
    cleaner = make_account(role="cleaner")
    headers = {**cleaner.auth, **request_kwargs.pop("headers", {})}
    response = api.post("/api/v1/cleaner/verification", headers=headers, **request_kwargs)
    assert 400 <= response.status_code < 500, response.text
    if status is not None:
        assert_problem(response, status, field=field)


@pytest.mark.parametrize("method, path", [("PUT", "/api/v1/cleaner/profile"),
                                          ("PUT", "/api/v1/cleaner/availability")])
@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b"null", b'"text"', b"\xff\xfe",
                                 b'{"weekly": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_malformed_json_bodies_are_400_or_422(api, make_account, method, path, raw):
    cleaner = make_account(role="cleaner")
    response = api.request(method, path, content=raw,
                           headers={**cleaner.auth, "Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert_problem(response, response.status_code)


# --- staff review ---


async def test_staff_approve_a_pending_cleaner_with_an_audit_row_and_an_event(api, db, settings, make_account):
    # given a cleaner who sent a document, and a member of staff
    cleaner = make_account(role="cleaner")
    document_id = upload_document(api, cleaner, pdf_bytes(), name="id.pdf").json()["document"]["id"]
    staff = await make_staff(api, settings)
    # when staff read the document and approve
    download = api.get(f"/api/v1/admin/cleaners/{cleaner.id}/verification/documents/{document_id}", headers=staff)
    assert download.status_code == 200 and download.content == pdf_bytes()
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["x-content-type-options"] == "nosniff"
    response = api.post(f"/api/v1/admin/cleaners/{cleaner.id}/verification", headers=staff,
                        json={"decision": "approve"})
    # then the cleaner is approved (search shows only these), the document too
    assert response.status_code == 200, response.text
    assert response.json()["verification"]["status"] == "approved"
    assert (await CleanerProfile.get(user_id=cleaner.id)).verification_status == "approved"
    own = api.get("/api/v1/cleaner/verification", headers=cleaner.auth).json()
    assert own["verification"]["verified_at"] is not None and own["documents"][0]["status"] == "approved"
    # and the decision and the reading are in the audit trail, the decision in the outbox
    actions = set(await AuditLog.filter(entity_id=cleaner.id).values_list("action", flat=True))
    assert {"cleaner.verification_approved", "cleaner.verification_document_read"} <= actions
    event = await OutboxEvent.get(type="cleaner.verification_approved", payload__contains={"cleaner_id": cleaner.id})
    assert event.payload["status"] == "approved"
    # and there is nothing left to decide, nor any need for more documents
    again = api.post(f"/api/v1/admin/cleaners/{cleaner.id}/verification", headers=staff, json={"decision": "reject",
                                                                                             "reason": "x"})
    assert_problem(again, 409, code="verification_not_pending")
    assert_problem(upload_document(api, cleaner, pdf_bytes()), 409, code="already_verified")


async def test_a_rejection_needs_a_reason_which_the_cleaner_sees(api, db, settings, make_account):
    cleaner = make_account(role="cleaner")
    upload_document(api, cleaner, image_bytes("JPEG", (600, 400)), name="blurry.jpg", declared="image/jpeg")
    staff = await make_staff(api, settings)
    no_reason = api.post(f"/api/v1/admin/cleaners/{cleaner.id}/verification", headers=staff,
                         json={"decision": "reject", "reason": "  "})
    assert_problem(no_reason, 422, field="reason")
    response = api.post(f"/api/v1/admin/cleaners/{cleaner.id}/verification", headers=staff,
                        json={"decision": "reject", "reason": "The photo is too blurry to read."})
    assert response.status_code == 200
    profile = api.get("/api/v1/cleaner/profile", headers=cleaner.auth).json()["profile"]
    assert profile["verification"]["status"] == "rejected"
    assert profile["verification"]["reason"] == "The photo is too blurry to read."
    row = await AuditLog.get(entity_id=cleaner.id, action="cleaner.verification_rejected")
    assert row.after["reason"] == "The photo is too blurry to read." and row.before == {"status": "pending"}
    # a new document puts them back in the queue
    assert upload_document(api, cleaner, pdf_bytes()).json()["verification"]["status"] == "pending"


async def test_staff_decisions_only_reach_real_cleaners(api, db, settings, make_account):
    staff = await make_staff(api, settings)
    client = make_account(role="client")
    unsent = make_account(role="cleaner")
    for target in ("0190d6a0-0000-7000-8000-000000000000", client.id):
        assert_problem(api.post(f"/api/v1/admin/cleaners/{target}/verification", headers=staff,
                                json={"decision": "approve"}), 404)
    assert_problem(api.post(f"/api/v1/admin/cleaners/{unsent.id}/verification", headers=staff,
                            json={"decision": "approve"}), 409)
    assert_problem(api.post("/api/v1/admin/cleaners/nope/verification", headers=staff,
                            json={"decision": "approve"}), 422, field="id")
    assert_problem(api.post(f"/api/v1/admin/cleaners/{unsent.id}/verification", headers=staff,
                            json={"decision": "maybe"}), 422, field="decision")
    assert_problem(api.post(f"/api/v1/admin/cleaners/{unsent.id}/verification", headers=unsent.auth,
                            json={"decision": "approve"}), 403)
    assert_problem(api.get("/api/v1/admin/cleaners", headers=client.auth), 403)


async def test_the_review_queue_lists_the_longest_waiting_first_a_page_at_a_time(api, db, settings, make_account):
    # given three cleaners who sent documents one after another
    cleaners = [make_account(role="cleaner") for _ in range(3)]
    for cleaner in cleaners:
        upload_document(api, cleaner, pdf_bytes())
    # and the second sends another document later (which must not move them back in the queue)
    upload_document(api, cleaners[1], pdf_bytes())
    staff = await make_staff(api, settings)
    # when staff walk the pending queue two at a time
    seen, cursor = [], None
    while True:
        page = api.get("/api/v1/admin/cleaners", headers=staff,
                       params={"verification": "pending", "limit": 2, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) <= 2
        seen += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # then each appears once, in the order they joined the queue, with their documents
    ids = [c["id"] for c in seen]
    assert len(ids) == len(set(ids))
    mine = [c for c in seen if c["id"] in {a.id for a in cleaners}]
    assert [c["id"] for c in mine] == [a.id for a in cleaners]
    assert [len(c["documents"]) for c in mine] == [1, 2, 1]
    assert mine[0]["email"] == cleaners[0].email and mine[0]["verification"]["status"] == "pending"
    assert_problem(api.get("/api/v1/admin/cleaners", headers=staff, params={"verification": "sleeping"}), 422,
                   field="verification")
    assert_problem(api.get("/api/v1/admin/cleaners", headers=staff, params={"cursor": "bm9wZQ"}), 422,
                   field="cursor")


# --- availability ---

SOON = (utcnow().date() + timedelta(days=7)).isoformat()


def test_a_cleaner_replaces_schedule_and_exceptions_together(api, make_account):
    cleaner = make_account(role="cleaner")
    assert api.get("/api/v1/cleaner/availability", headers=cleaner.auth).json()["availability"] == {
        "time_zone": "Europe/London", "weekly": [], "exceptions": []}
    soon = date.today() + timedelta(days=10)
    body = {"weekly": [{"weekday": 0, "start_minute": 780, "end_minute": 1080},
                       {"weekday": 0, "start_minute": 480, "end_minute": 720},
                       {"weekday": 5, "start_minute": 1200, "end_minute": 1440}],
            "exceptions": [{"date": soon.isoformat(), "kind": "off"},
                           {"date": (soon + timedelta(days=1)).isoformat(), "kind": "extra",
                            "start_minute": 600, "end_minute": 900},
                           {"date": (date.today() - timedelta(days=3)).isoformat(), "kind": "off"}]}
    response = api.put("/api/v1/cleaner/availability", headers=cleaner.auth, json=body)
    assert response.status_code == 200, response.text
    saved = api.get("/api/v1/cleaner/availability", headers=cleaner.auth).json()["availability"]
    assert saved == response.json()["availability"]
    assert [(w["weekday"], w["start_minute"]) for w in saved["weekly"]] == [(0, 480), (0, 780), (5, 1200)]
    # past exceptions are dropped, the rest kept in date order
    assert saved["exceptions"] == [
        {"date": soon.isoformat(), "kind": "off", "start_minute": None, "end_minute": None},
        {"date": (soon + timedelta(days=1)).isoformat(), "kind": "extra", "start_minute": 600, "end_minute": 900}]


@pytest.mark.parametrize("body, field", [
    ({"weekly": [{"weekday": 1, "start_minute": 480, "end_minute": 720},
                 {"weekday": 1, "start_minute": 700, "end_minute": 800}]}, "weekly.1"),
    ({"weekly": [{"weekday": 7, "start_minute": 480, "end_minute": 720}]}, "weekly.0.weekday"),
    ({"weekly": [{"weekday": 1, "start_minute": 480, "end_minute": 1441}]}, "weekly.0.end_minute"),
    ({"weekly": [{"weekday": 1, "start_minute": 720, "end_minute": 480}]}, "weekly.0.end_minute"),
    ({"weekly": [{"weekday": 1, "start_minute": "08:00", "end_minute": 720}]}, "weekly.0.start_minute"),
    ({"weekly": [{"weekday": d % 7, "start_minute": m, "end_minute": m + 1} for d in range(7)
                 for m in range(8)]}, "weekly"),
    ({"weekly": [], "exceptions": [{"date": "2030-02-30", "kind": "off"}]}, "exceptions.0.date"),
    ({"weekly": [], "exceptions": [{"date": "tomorrow", "kind": "off"}]}, "exceptions.0.date"),
    ({"weekly": [], "exceptions": [{"date": SOON, "kind": "holiday"}]}, "exceptions.0.kind"),
    ({"weekly": [], "exceptions": [{"date": SOON, "kind": "extra"}]}, "exceptions.0"),
    ({"weekly": [], "exceptions": [{"date": "2040-02-03", "kind": "off"}]}, "exceptions.0.date"),
    ({"weekly": [], "exceptions": [{"date": (utcnow().date() + timedelta(days=i)).isoformat(), "kind": "off"}
                                   for i in range(400)]}, "exceptions"),
    ({"exceptions": []}, "weekly"),
])
def test_bad_schedules_are_422_naming_the_field_and_keep_the_old_one(api, make_account, body, field):
    cleaner = make_account(role="cleaner")
    good = {"weekly": [{"weekday": 2, "start_minute": 540, "end_minute": 1020}], "exceptions": []}
    assert api.put("/api/v1/cleaner/availability", headers=cleaner.auth, json=good).status_code == 200
    assert_problem(api.put("/api/v1/cleaner/availability", headers=cleaner.auth, json=body), 422, field=field)
    kept = api.get("/api/v1/cleaner/availability", headers=cleaner.auth).json()["availability"]
    assert kept["weekly"] == good["weekly"]


async def test_photo_evidence_is_opt_in_in_the_model_as_in_the_database(db):
    # migration 0009 made the column default false; a row made through the model agrees
    [row] = await connections.get("default").execute_query_dict(
        """SELECT column_default FROM information_schema.columns
           WHERE table_name = 'service_types' AND column_name = 'requires_photo_evidence'""")
    assert row["column_default"] == "false"
    assert ServiceType._meta.fields_map["requires_photo_evidence"].default is False
