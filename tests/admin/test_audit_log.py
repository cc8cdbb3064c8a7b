"""The audit log and the outbox: read-only pages that explain what happened."""

from __future__ import annotations

from core.events import EventType
from storage.models import OutboxEvent
from tests.admin.conftest import Dashboard, MakePerson, Person


async def test_audit_log_lists_a_users_history_newest_first_with_a_link_to_the_actor(
        dashboard: Dashboard, staff: Person, make_person: MakePerson):
    # given a client whom staff suspended and then reinstated
    client = await make_person(role="client")
    await dashboard.row_action("user", "suspend", client.id, form={"reason": "checking"})
    await dashboard.row_action("user", "reinstate", client.id)

    # when staff search the audit log for that account
    page = await dashboard.client.get("/admin/audit-log/list", params={"q": client.id})

    # then the reinstatement comes before the suspension, and the actor links to their account
    assert page.status_code == 200
    assert page.text.index("user.reinstated") < page.text.index("user.suspended")
    assert f"/admin/user/detail?pk={staff.id}" in page.text
    assert "Olive Operations" in page.text


async def test_audit_log_cannot_be_written_through_the_dashboard(dashboard: Dashboard):
    # given a signed-in staff member
    # when they open the create form, or post to it anyway
    form = await dashboard.client.get("/admin/audit-log/create")
    token = dashboard.cookie_token
    posted = await dashboard.client.post("/admin/audit-log/create", data={
        "action": "user.suspended", "entity_type": "user", "entity_id": "x", "csrftoken": token})
    deleted = await dashboard.batch_action("audit-log", "delete", ["1"])

    # then every write is refused
    assert form.status_code == 403
    assert posted.status_code == 403
    assert deleted.status_code == 400


async def test_outbox_shows_events_but_redacts_their_secrets(
        dashboard: Dashboard, make_account):
    # given a fresh registration, which queued an e-mail verification link with a secret token
    account = make_account(role="client")
    event = await OutboxEvent.filter(type=EventType.EMAIL_VERIFICATION_REQUESTED,
                                     payload__contains={"user_id": account.id}).first()
    assert event is not None

    # when staff look the event up in the outbox
    listing = await dashboard.client.get("/admin/outbox-event/list",
                                         params={"q": "email_verification"})
    detail = await dashboard.client.get("/admin/outbox-event/detail", params={"pk": str(event.id)})

    # then they see what was queued for whom, but never the token itself
    assert listing.status_code == detail.status_code == 200
    assert str(event.event_id) in listing.text
    assert account.email in detail.text
    assert event.payload["token"] not in detail.text
    assert "[redacted]" in detail.text


async def test_outbox_cannot_be_edited_through_the_dashboard(dashboard: Dashboard):
    # given a signed-in staff member
    # when they open the outbox's create page
    response = await dashboard.client.get("/admin/outbox-event/create")

    # then it is refused
    assert response.status_code == 403
