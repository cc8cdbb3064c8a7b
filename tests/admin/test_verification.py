"""Staff working through the cleaner verification queue: read the document, approve or reject."""

from __future__ import annotations

import re

import httpx

from storage.models import AuditLog, OutboxEvent
from tests.admin.conftest import Dashboard, Person
from tests.conftest import Account
from tests.core.test_supply import pdf_bytes

DOCUMENT_LINK = re.compile(r'href="([^"]*/admin/verification-queue/document\?[^"]+)"')


async def pending_cleaner(edge_api: httpx.AsyncClient, make_account) -> Account:
    """A cleaner who registered and sent an identity document through the app."""
    cleaner: Account = make_account(role="cleaner")
    sent = await edge_api.post("/api/v1/cleaner/verification", headers=cleaner.auth,
                    files={"document": ("id.pdf", pdf_bytes(), "application/pdf")})
    assert sent.status_code in (200, 201), sent.text
    return cleaner


async def verification(edge_api: httpx.AsyncClient, cleaner: Account) -> dict[str, str]:
    """What the cleaner's app shows about their verification."""
    profile = await edge_api.get("/api/v1/cleaner/profile", headers=cleaner.auth)
    assert profile.status_code == 200, profile.text
    return profile.json()["profile"]["verification"]


async def test_queue_lists_waiting_cleaners_oldest_first_with_their_document(
        dashboard: Dashboard, staff: Person, edge_api: httpx.AsyncClient, make_account):
    # given two cleaners who sent documents one after the other
    first, second = await pending_cleaner(edge_api, make_account), await pending_cleaner(edge_api, make_account)

    # when staff open the queue and follow the first cleaner's document link
    page = await dashboard.client.get("/admin/verification-queue/list", params={"page_size": 100})
    assert page.status_code == 200, page.text
    assert first.email in page.text and second.email in page.text
    assert page.text.index(first.email) < page.text.index(second.email)
    link = next(url.replace("&amp;", "&") for url in DOCUMENT_LINK.findall(page.text) if first.id in url)
    download = await dashboard.client.get(link)

    # then the document comes as a download that no browser renders in place
    assert download.status_code == 200, download.text
    assert download.content == pdf_bytes()
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    # and the reading is in the audit trail under the staff member's name
    read = await AuditLog.get(entity_id=first.id, action="cleaner.verification_document_read")
    assert str(read.actor_id) == staff.id
    # and the cleaner's own page in the queue shows who they are and the same document
    detail = await dashboard.client.get("/admin/verification-queue/detail", params={"pk": first.id})
    assert detail.status_code == 200, detail.text
    assert first.email in detail.text
    assert any(first.id in url for url in DOCUMENT_LINK.findall(detail.text))


async def test_approving_from_the_queue_lets_the_cleaner_see_it_in_the_app(
        dashboard: Dashboard, staff: Person, edge_api: httpx.AsyncClient, make_account):
    # given a cleaner waiting for verification
    cleaner = await pending_cleaner(edge_api, make_account)
    assert (await verification(edge_api, cleaner))["status"] == "pending"

    # when staff approve them from the queue
    response = await dashboard.row_action("verification-queue", "approve", cleaner.id)

    # then the cleaner's own profile says approved, and they left the queue
    assert response.status_code == 200, response.text
    assert (await verification(edge_api, cleaner))["status"] == "approved"
    page = await dashboard.client.get("/admin/verification-queue/list", params={"page_size": 100})
    assert cleaner.email not in page.text
    # and the decision was audited and announced by the storage action
    row = await AuditLog.get(entity_id=cleaner.id, action="cleaner.verification_approved")
    assert str(row.actor_id) == staff.id
    assert await OutboxEvent.filter(type="cleaner.verification_approved",
                                    payload__contains={"cleaner_id": cleaner.id}).exists()


async def test_rejecting_without_a_reason_is_refused_with_a_clear_message(
        dashboard: Dashboard, edge_api: httpx.AsyncClient, make_account):
    # given a cleaner waiting for verification
    cleaner = await pending_cleaner(edge_api, make_account)

    # when staff reject them without saying why
    response = await dashboard.row_action("verification-queue", "reject", cleaner.id, form={"reason": " "})

    # then the dashboard says a reason is needed, and the cleaner is still waiting
    assert response.status_code == 422
    body = response.json()
    assert body["errors"] == [{"field": "reason",
                               "message": "say why, so that the cleaner knows what to send instead"}]
    assert "say why" in body["msg"]
    assert (await verification(edge_api, cleaner))["status"] == "pending"


async def test_batch_reject_tells_each_cleaner_why(dashboard: Dashboard, edge_api: httpx.AsyncClient, make_account):
    # given two cleaners whose documents are unreadable
    cleaners = [await pending_cleaner(edge_api, make_account) for _ in range(2)]

    # when staff reject both at once, with a reason
    response = await dashboard.batch_action("verification-queue", "reject", [c.id for c in cleaners],
                                            form={"reason": "the photo is blurred"})

    # then both are rejected, and each sees the reason in the app
    assert response.status_code == 200, response.text
    for cleaner in cleaners:
        shown = await verification(edge_api, cleaner)
        assert (shown["status"], shown["reason"]) == ("rejected", "the photo is blurred")
