"""Users in the dashboard: find an account, look at it, create one, suspend or reinstate it.

Creating goes through `storage.accounts.create_user` (audited by the generic view, in the same
transaction) and suspending through `storage.accounts.set_suspended`, which writes its own audit
row: the same actions the CLI and the REST API use. Editing is limited to the name and phone;
the e-mail, the role and the suspension state change only through their own actions.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette_admin import (
    ActionSelection,
    DateTimeField,
    EmailField,
    EnumField,
    PasswordField,
    PhoneField,
    StringField,
    UUIDField,
    action,
    flash,
    row_action,
)
from starlette_admin.exceptions import FormValidationError
from starlette_admin.fields import BaseField
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q

from admin.auth import current_staff
from admin.tortoise_view import TortoiseModelView
from core.accounts import AccountError, Role, check_name, normalise_email
from core.errors import Conflict, Invalid
from core.settings import Settings
from storage import accounts
from storage.models import User

REASON_FORM = """
<form>
  <div class="mt-3">
    <label class="form-label" for="suspend-reason">Reason (kept in the audit log)</label>
    <textarea class="form-control" id="suspend-reason" name="reason" maxlength="500" rows="2"></textarea>
  </div>
</form>
"""


def valid_email(request: Request, field: BaseField, value: Any, form_values: dict[str, Any]) -> None:
    """Form-side check with the rule the account actions apply."""
    try:
        normalise_email(str(value or ""))
    except Invalid as exc:
        raise ValueError(exc.detail) from None


class UserView(TortoiseModelView):
    audit_entity = "user"
    menu_label = "Users"
    icon = "fa fa-users"
    fields = [
        UUIDField("id", label="Id", read_only=True),
        EmailField("email", required=True, validators=[valid_email]),
        StringField("name", required=True, maxlength=120),
        PhoneField("phone"),
        EnumField("role", choices=[(str(r), str(r).title()) for r in Role], required=True),
        PasswordField("password", required=True, exclude_from_list=True,
                      exclude_from_detail=True, exclude_from_edit=True),
        DateTimeField("email_verified_at", label="E-mail verified", read_only=True),
        DateTimeField("suspended_at", label="Suspended", read_only=True),
        DateTimeField("created_at", label="Joined", read_only=True),
    ]
    exclude_fields_from_create = ["id", "email_verified_at", "suspended_at", "created_at"]
    exclude_fields_from_edit = ["id", "email", "role"]
    exclude_fields_from_export = ["password"]
    searchable_fields = ["name", "email", "phone"]
    sortable_fields = ["email", "name", "role", "suspended_at", "created_at"]
    fields_default_sort = [("created_at", True)]
    row_actions = ["view", "edit", "suspend", "reinstate"]
    actions = ["suspend", "reinstate"]

    def __init__(self, settings: Settings) -> None:
        super().__init__(User)
        self.settings = settings

    def can_delete(self, request: Request) -> bool:
        return False  # accounts are suspended, never deleted, from the dashboard

    async def repr(self, obj: Any, request: Request) -> str:
        return f"{obj.name} <{obj.email}>"

    def get_search_query(self, request: Request, term: str) -> Q:
        """A whole e-mail address finds its one account through the unique index; anything else
        (a name, part of an address, a phone number) is the substring search over all three.

        A substring match on a whole address is as selective as it gets, but PostgreSQL cannot
        tell and scans the newest-first index until it finds it: 250 ms at 100,000 accounts."""
        try:
            address = normalise_email(term)
        except Invalid:
            return super().get_search_query(request, term)
        return Q(email=address)

    async def insert(self, request: Request, data: dict[str, Any], *, using: BaseDBAsyncClient) -> User:
        try:
            user = await accounts.create_user(
                email=data.get("email") or "", password=data.get("password") or "",
                name=data.get("name") or "", role=data.get("role") or "", settings=self.settings,
                using=using,
            )
        except Conflict as exc:
            if exc.code != AccountError.EMAIL_TAKEN:
                raise
            raise FormValidationError({"email": exc.detail}) from exc
        if data.get("phone"):
            user.phone = data["phone"]
            await user.save(update_fields=["phone", "updated_at"], using_db=using)
        return user

    async def clean(self, request: Request, data: dict[str, Any]) -> dict[str, Any]:
        cleaned = dict(data)
        if "name" in cleaned:
            cleaned["name"] = check_name(cleaned["name"] or "")
        if "phone" in cleaned:
            cleaned["phone"] = (cleaned["phone"] or "").strip() or None
        return cleaned

    # --- suspension, one account (row) or a selection (batch) ---

    async def is_row_action_allowed_for_obj(self, request: Request, name: str, obj: Any) -> bool:
        if name == "suspend":
            # Hidden on your own row: one click would lock you out of the dashboard.
            return obj.suspended_at is None and obj.id != current_staff(request).id
        if name == "reinstate":
            return obj.suspended_at is not None
        return await super().is_row_action_allowed_for_obj(request, name, obj)

    @row_action(name="suspend", text="Suspend", icon_class="fa fa-ban",
                confirmation="Suspend this account? Its sessions and API tokens stop working at once.",
                submit_btn_text="Suspend", form=REASON_FORM)
    async def suspend_one(self, request: Request, pk: Any) -> None:
        await self._set_suspended(request, [pk], suspended=True)

    @row_action(name="reinstate", text="Reinstate", icon_class="fa fa-undo",
                confirmation="Reinstate this account?", submit_btn_text="Reinstate")
    async def reinstate_one(self, request: Request, pk: Any) -> None:
        await self._set_suspended(request, [pk], suspended=False)

    @action(name="suspend", text="Suspend accounts",
            confirmation="Suspend the selected accounts? Their API tokens stop working at once.",
            submit_btn_text="Suspend", form=REASON_FORM)
    async def suspend_selected(self, request: Request, selection: ActionSelection) -> None:
        await self._set_suspended(request, await selection.pks(), suspended=True)

    @action(name="reinstate", text="Reinstate accounts",
            confirmation="Reinstate the selected accounts?", submit_btn_text="Reinstate")
    async def reinstate_selected(self, request: Request, selection: ActionSelection) -> None:
        await self._set_suspended(request, await selection.pks(), suspended=False)

    async def _set_suspended(self, request: Request, pks: list[Any], *, suspended: bool) -> None:
        async with request.form() as form:
            reason = str(form.get("reason") or "").strip()[:500]
        for pk in pks:
            await accounts.set_suspended(user_id=parse_user_id(pk), suspended=suspended,
                                         actor=current_staff(request), reason=reason)
        verb = "Suspended" if suspended else "Reinstated"
        flash(request, f"{verb} {len(pks)} account{'s' if len(pks) != 1 else ''}.", "success")


def parse_user_id(raw: Any) -> UUID:
    try:
        return UUID(str(raw))
    except ValueError:
        raise Invalid("must be a user id (a UUID)", field="pk") from None
