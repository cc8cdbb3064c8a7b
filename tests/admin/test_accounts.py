"""Staff finding, creating, editing, suspending and reinstating accounts."""

from __future__ import annotations

import html
import re
import secrets
import uuid

import httpx

from storage.models import AuditLog, User
from tests.admin.conftest import Dashboard, MakePerson, Person
from tests.conftest import STRONG_PASSWORD, Account


async def test_users_list_and_lookup_find_accounts_by_name_email_or_phone(
        dashboard: Dashboard, make_person: MakePerson):
    # given two clients, one with a distinctive name and one with a phone number
    marker = secrets.token_hex(4)
    wanted = await make_person(role="client", name=f"Wanda {marker}")
    other = await make_person(role="client", name="Otto Other")
    await User.filter(id=other.user.id).update(phone=f"+4477{int(marker, 16) % 10**8:08d}")

    # when staff search the users list and the JSON lookup the dashboard's scripts use
    page = await dashboard.client.get("/admin/user/list", params={"q": marker.upper()})
    lookup = await dashboard.client.get("/admin/_api/user/relation-lookup", params={"q": marker})
    by_email = await dashboard.client.get("/admin/_api/user/relation-lookup",
                                          params={"q": wanted.email})
    by_shouted_email = await dashboard.client.get("/admin/user/list", params={"q": f" {wanted.email.upper()} "})
    by_part_of_email = await dashboard.client.get("/admin/_api/user/relation-lookup",
                                                  params={"q": wanted.email.split("@")[0]})
    by_phone = await dashboard.client.get("/admin/_api/user/relation-lookup",
                                          params={"q": f"{int(marker, 16) % 10**8:08d}"})

    # then each search finds exactly the matching account, case-insensitively
    assert page.status_code == 200
    assert wanted.email in page.text and other.email not in page.text
    assert lookup.json()["total"] == 1
    assert [item["id"] for item in lookup.json()["items"]] == [wanted.id]
    assert [item["email"] for item in by_email.json()["items"]] == [wanted.email]
    assert wanted.email in by_shouted_email.text and other.email not in by_shouted_email.text
    assert [item["email"] for item in by_part_of_email.json()["items"]] == [wanted.email]
    assert [item["id"] for item in by_phone.json()["items"]] == [other.id]


async def test_users_list_shows_role_and_paginates(dashboard: Dashboard, make_person: MakePerson):
    # given eleven cleaners sharing a name
    marker = secrets.token_hex(4)
    cleaners = [await make_person(role="cleaner", name=f"Page {marker}") for _ in range(11)]

    # when staff search for them, ten to a page
    first = await dashboard.client.get("/admin/user/list", params={"q": marker, "page": 1})
    second = await dashboard.client.get("/admin/user/list", params={"q": marker, "page": 2})

    # then the pages split them 10 + 1, with the total and each row's role shown
    def shown(page: httpx.Response) -> int:
        return sum(c.email in page.text for c in cleaners)

    assert (shown(first), shown(second)) == (10, 1)
    assert "Showing 1 to 10 of 11 entries" in first.text
    assert "Cleaner" in first.text


async def test_suspending_a_client_stops_their_api_token_at_the_edge(
        dashboard: Dashboard, staff: Person, edge_api: httpx.AsyncClient, make_account):
    # given a client signed in to the app through the edge
    client: Account = make_account(role="client")
    assert (await edge_api.get("/api/v1/me", headers=client.auth)).status_code == 200

    # when staff suspend them from the users list, giving a reason
    response = await dashboard.row_action("user", "suspend", client.id,
                                          form={"reason": "chargeback fraud"})

    # then the app's next request with that token is refused
    assert response.status_code == 200, response.text
    assert "redirect" in response.json()
    assert (await edge_api.get("/api/v1/me", headers=client.auth)).status_code == 401
    # and the audit log says who did it, to whom, and why
    row = await AuditLog.get(entity_id=client.id, action="user.suspended")
    assert str(row.actor_id) == staff.id
    assert row.entity_type == "user"
    assert row.before == {"suspended": False}
    assert row.after == {"suspended": True, "reason": "chargeback fraud"}


async def test_batch_reinstating_gives_accounts_their_access_back(
        dashboard: Dashboard, edge_api: httpx.AsyncClient, make_account):
    # given two clients whom staff suspended together
    first, second = make_account(role="client"), make_account(role="client")
    suspended = await dashboard.batch_action("user", "suspend", [first.id, second.id])
    assert suspended.status_code == 200, suspended.text
    assert (await edge_api.get("/api/v1/me", headers=first.auth)).status_code == 401

    # when staff reinstate both with the batch action
    reinstated = await dashboard.batch_action("user", "reinstate", [first.id, second.id])

    # then both tokens work again, and each change is in the audit log
    assert reinstated.status_code == 200, reinstated.text
    assert (await edge_api.get("/api/v1/me", headers=first.auth)).status_code == 200
    assert (await edge_api.get("/api/v1/me", headers=second.auth)).status_code == 200
    for account in (first, second):
        actions = await AuditLog.filter(entity_id=account.id).order_by("id").values_list(
            "action", flat=True)
        assert actions[-2:] == ["user.suspended", "user.reinstated"]


async def test_suspending_an_unknown_account_is_explained_as_a_problem(dashboard: Dashboard):
    # given an id that belongs to nobody
    nobody = str(uuid.uuid4())

    # when staff's script asks to suspend it
    response = await dashboard.row_action("user", "suspend", nobody)

    # then the domain's NotFound comes back as an RFC 9457 problem with a readable message
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["detail"] == "no such user"
    assert body["type"] == "urn:spotless:problem:not_found"


async def test_creating_an_account_hashes_its_password_and_is_audited(
        dashboard: Dashboard, staff: Person, edge_api: httpx.AsyncClient):
    # given staff filling in the new-user form for a cleaner
    email = f"new.cleaner.{secrets.token_hex(4)}@example.com"

    # when they submit it
    response = await dashboard.submit_form(
        "/admin/user/create", email=email, name="Nina New", role="cleaner",
        password=STRONG_PASSWORD, phone="+44 7700 900123")

    # then the cleaner can sign in to the app with that password
    assert response.status_code == 303, response.text
    login = await edge_api.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD,
                                                 "device_name": "pytest"})
    assert login.status_code == 200, login.text
    user = await User.get(email=email)
    assert (user.role, user.phone) == ("cleaner", "+44 7700 900123")
    # and the audit row records the new account, without any password
    row = await AuditLog.get(entity_id=str(user.id), action="user.created")
    assert str(row.actor_id) == staff.id
    assert row.before is None
    assert row.after["email"] == email and row.after["role"] == "cleaner"
    assert not any("password" in key for key in row.after)


async def test_creating_an_account_with_a_taken_email_shows_the_error_on_the_form(
        dashboard: Dashboard, make_person: MakePerson):
    # given an existing account
    existing = await make_person(role="client")

    # when staff create another with the same e-mail
    response = await dashboard.submit_form(
        "/admin/user/create", email=existing.email, name="Dup Licate", role="client",
        password=STRONG_PASSWORD)

    # then the form comes back with the reason next to the e-mail
    assert response.status_code == 422
    assert "already exists" in response.text
    assert await User.filter(email=existing.email).count() == 1


async def test_editing_a_name_records_before_and_after(dashboard: Dashboard, staff: Person,
                                                       make_person: MakePerson):
    # given a client called "Eddie Before"
    client = await make_person(role="client", name="Eddie Before")

    # when staff correct the name on the edit form
    response = await dashboard.submit_form("/admin/user/edit", params={"pk": client.id},
                                           name="Eddie After", phone="")

    # then the account is renamed and the audit row holds exactly what changed
    assert response.status_code == 303, response.text
    assert (await User.get(id=client.user.id)).name == "Eddie After"
    row = await AuditLog.get(entity_id=client.id, action="user.updated")
    assert str(row.actor_id) == staff.id
    assert row.before == {"name": "Eddie Before"}
    assert row.after == {"name": "Eddie After"}


async def test_a_name_the_domain_rejects_is_shown_on_the_form_and_not_saved(
        dashboard: Dashboard, make_person: MakePerson):
    # given a client
    client = await make_person(role="client", name="Ivy Valid")

    # when staff type a name with an invisible character
    response = await dashboard.submit_form("/admin/user/edit", params={"pk": client.id},
                                           name="Ivy\u200bHidden")

    # then the form shows the account rule's message, and nothing changed or was audited
    assert response.status_code == 422
    assert "must not contain control or invisible characters" in response.text
    assert (await User.get(id=client.user.id)).name == "Ivy Valid"
    assert not await AuditLog.filter(entity_id=client.id, action="user.updated").exists()


async def test_accounts_cannot_be_deleted_from_the_dashboard(dashboard: Dashboard,
                                                             make_person: MakePerson):
    # given a client
    client = await make_person(role="client")

    # when a script calls the stock delete action on it anyway
    response = await dashboard.batch_action("user", "delete", [client.id])

    # then it is refused, and the account is still there
    assert response.status_code == 400
    assert await User.filter(id=client.user.id).exists()


async def test_exporting_the_users_list_works_like_the_page_links_it(dashboard: Dashboard,
                                                                    make_person: MakePerson):
    # given a client found by a search
    marker = secrets.token_hex(4)
    person = await make_person(role="client", name=f"Export {marker}")
    page = await dashboard.client.get("/admin/user/list", params={"q": marker})

    # when staff follow the list's "Export CSV" link (the one export; admin/tortoise_view.py)
    link = re.search(r'href="([^"]*/export/user\.csv[^"]*)"', page.text)
    assert link, "no Export CSV link on the list"
    response = await dashboard.client.get(html.unescape(link.group(1)))
    # and when starlette-admin's own export action is called, which is switched off
    builtin = await dashboard.client.post(
        "/admin/_api/user/action", params={"name": "export", "_list_query": f"?q={marker}"},
        data={"scope": "page", "format": "csv", "csrftoken": dashboard.cookie_token})

    # then the file lists that account and no password material; the built-in one exports nothing
    assert response.status_code == 200, response.text
    assert "text/csv" in response.headers["content-type"]
    assert person.email in response.text
    assert "argon2" not in response.text
    assert "password" not in response.text.lower()
    assert builtin.status_code == 400
