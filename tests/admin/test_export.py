"""Exporting any filtered list as CSV: every matching row, in the list's order, safe to open."""

from __future__ import annotations

import csv
import io
import secrets

from tortoise.transactions import in_transaction

from admin.tortoise_view import csv_cell
from core.events import EventType
from storage import outbox
from storage.models import AuditLog
from tests.admin.conftest import Dashboard, MakePerson, Person


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_a_searched_sorted_list_exports_every_row_not_just_the_page(
        dashboard: Dashboard, staff: Person, make_person: MakePerson):
    # given more matching accounts than a list page holds, and others that do not match
    tag = secrets.token_hex(4)
    for i in range(27):
        await make_person(role="client", name=f"Export {tag} {i:02d}")
    await make_person(role="client", name="Someone Else Entirely")

    # when staff export the user list searched for the tag, sorted by name descending
    response = await dashboard.client.get("/admin/export/user.csv",
                                          params={"q": tag, "sort": "name__desc", "page_size": "10"})

    # then the CSV has a header and all 27 matches in that order, without password hashes
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    header, *rows = rows_of(response.text)
    names = [row[header.index("Name")] for row in rows]
    assert names == [f"Export {tag} {i:02d}" for i in reversed(range(27))]
    assert not any("password" in h.lower() for h in header)
    # and the export is audited with who asked and for what
    entry = await AuditLog.filter(action="user.exported", actor_id=staff.user.id).order_by("-id").first()
    assert entry is not None and tag in entry.after["query"]


async def test_cells_that_would_run_as_spreadsheet_formulas_are_quoted(
        dashboard: Dashboard, make_person: MakePerson):
    # given accounts whose names start like formulas (names are user-supplied)
    tag = secrets.token_hex(4)
    hostile = ["=HYPERLINK(\"http://evil.example\")", "+1+2", "-3-4", "@SUM(A1)"]
    for name in hostile:
        await make_person(role="client", name=f"{name} {tag}")

    # when staff export them
    response = await dashboard.client.get("/admin/export/user.csv", params={"q": tag})

    # then every such cell starts with a quote, so a spreadsheet shows it as text
    header, *rows = rows_of(response.text)
    exported = sorted(row[header.index("Name")] for row in rows)
    assert exported == sorted(f"'{name} {tag}" for name in hostile)


def test_a_formula_behind_whitespace_is_quoted_and_numbers_stay_numbers():
    # spreadsheets trim leading whitespace before looking for a formula
    assert csv_cell(" \t=1+1") == "' \t=1+1"
    assert csv_cell("plain") == "plain"
    assert csv_cell(-5) == -5
    assert csv_cell(None) == ""


async def test_a_filtered_export_applies_the_filter(dashboard: Dashboard, make_person: MakePerson):
    # given a cleaner and a client sharing a tag (factory addresses start with the role)
    tag = secrets.token_hex(4)
    cleaner = await make_person(role="cleaner", name=f"Filter {tag} cleaner")
    await make_person(role="client", name=f"Filter {tag} client")

    # when staff export the list searched for the tag and filtered to cleaners' addresses
    response = await dashboard.client.get("/admin/export/user.csv",
                                          params={"q": tag, "filter": "email__startswith=cleaner."})

    # then only the cleaner is in it; a filter on a field the list does not filter is a 422
    assert response.status_code == 200, response.text
    header, *rows = rows_of(response.text)
    assert [row[header.index("Id")] for row in rows] == [cleaner.id]
    refused = await dashboard.client.get("/admin/export/user.csv", params={"filter": "role__eq=admin"})
    assert refused.status_code == 422


async def test_export_needs_a_staff_session_and_a_real_list(browser: Dashboard, dashboard: Dashboard):
    # when someone without a session asks for an export, and staff ask for a list that is not there
    async with type(browser.client)(base_url=str(browser.client.base_url)) as anonymous:
        signed_out = await anonymous.get("/admin/export/user.csv")
    unknown = await dashboard.client.get("/admin/export/no-such-view.csv",
                                         headers={"accept": "application/json"})

    # then the first is sent to sign in and the second is a 404 problem
    assert signed_out.status_code in (302, 303, 401, 403)
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "not_found"


async def test_the_outbox_exports_without_payloads_which_may_hold_one_time_secrets(dashboard: Dashboard):
    # given an e-mail verification event in the outbox, carrying its one-time link token
    secret = f"one-time-{secrets.token_hex(8)}"
    async with in_transaction() as tx:
        await outbox.enqueue(EventType.EMAIL_VERIFICATION_REQUESTED, {
            "user_id": "u-1", "email": "a@example.com", "name": "A", "token": secret,
            "expires_at": "2030-01-01T00:00:00+00:00"}, using=tx)

    # when staff export the outbox
    response = await dashboard.client.get("/admin/export/outbox-event.csv", params={"sort": "id__desc"})

    # then the event is listed, without its payload or the token
    assert response.status_code == 200, response.text
    header, *rows = rows_of(response.text)
    assert any(EventType.EMAIL_VERIFICATION_REQUESTED in row for row in rows)
    assert not any("payload" in h.lower() for h in header)
    assert secret not in response.text


async def test_every_list_of_the_dashboard_exports(dashboard: Dashboard, settings):
    # given every model page the dashboard has
    from admin.site import build_admin
    from admin.tortoise_view import TortoiseModelView

    views = [v for v in build_admin(settings)._model_views
             if isinstance(v, TortoiseModelView) and v.csv_export]
    assert len(views) >= 8

    # when staff export each list, then each answers a CSV with a header row
    for view in views:
        response = await dashboard.client.get(f"/admin/export/{view.key}.csv")
        assert response.status_code == 200, (view.key, response.text[:300])
        assert rows_of(response.text)[0], view.key
