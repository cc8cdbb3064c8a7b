"""The generic Tortoise view's write path, driven in-process against the real database.

No page of the dashboard deletes yet (accounts are suspended, never deleted), so these stories
use a writable view over users declared here, the way a future page would declare one.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request
from starlette_admin import RequestAction

from admin.tortoise_view import TortoiseModelView
from storage.models import AuditLog, User
from tests.admin.conftest import MakePerson, Person
from tests.conftest import unique_email


class PlainUserView(TortoiseModelView):
    audit_entity = "user"
    fields = ["id", "email", "name", "role"]

    def __init__(self) -> None:
        super().__init__(User)


class AuditFailsView(PlainUserView):
    async def record(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the audit table is unavailable")


def request_by(staff: Person, action: RequestAction) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/admin/", "headers": [],
                    "query_string": b"", "state": {"staff": staff.user, "action": action}})


async def test_created_row_is_audited_with_its_fields(staff: Person):
    # given a writable view over a model
    view = PlainUserView()
    email = unique_email("plain")

    # when staff create a row through it
    user = await view.create(request_by(staff, RequestAction.CREATE),
                             {"email": email, "name": "Plain Person", "role": "client"})

    # then the row exists and its audit row holds the new values
    assert (await User.get(id=user.id)).email == email
    row = await AuditLog.get(entity_id=str(user.id), action="user.created")
    assert str(row.actor_id) == staff.id
    assert row.after == {"id": str(user.id), "email": email, "name": "Plain Person", "role": "client"}


async def test_deleted_rows_are_audited_with_what_they_held(staff: Person, make_person: MakePerson):
    # given two accounts
    doomed = [await make_person(role="client", name=f"Doomed {i}") for i in range(2)]

    # when staff delete both through a writable view
    deleted = await PlainUserView().delete(request_by(staff, RequestAction.ACTION),
                                           [p.id for p in doomed])

    # then both are gone and each has a "deleted" audit row with its last values
    assert deleted == 2
    for person in doomed:
        assert not await User.filter(id=person.user.id).exists()
        row = await AuditLog.get(entity_id=person.id, action="user.deleted")
        assert str(row.actor_id) == staff.id
        assert row.before["email"] == person.email
        assert row.after is None


async def test_a_change_whose_audit_row_cannot_be_written_is_rolled_back(
        staff: Person, make_person: MakePerson):
    # given an account, and a view whose audit write fails
    person = await make_person(role="client", name="Kept Safe")

    # when staff try to delete the account
    with pytest.raises(RuntimeError):
        await AuditFailsView().delete(request_by(staff, RequestAction.ACTION), [person.id])

    # then the account is still there: no change without its audit row
    assert await User.filter(id=person.user.id).exists()
