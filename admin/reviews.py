"""Reviews in the dashboard: read them, hide one that breaks the rules, restore it.

Read-only as rows: hiding and restoring go through `storage.reviews.set_review_hidden`, which
writes the audit row and recounts the cleaner's rating (a hidden review leaves it) in one
transaction. This page never edits a review's words or stars.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette_admin import (
    ActionSelection,
    BooleanField,
    DateTimeField,
    HasOne,
    IntegerField,
    TextAreaField,
    UUIDField,
    action,
    flash,
    row_action,
)

from admin.auth import current_staff
from admin.tortoise_view import TortoiseModelView
from storage import reviews
from storage.models import Review

HIDE_FORM = """
<form>
  <div class="mt-3">
    <label class="form-label" for="hide-reason">Why it is hidden (kept in the audit trail)</label>
    <textarea class="form-control" id="hide-reason" name="reason" maxlength="500" rows="2"></textarea>
  </div>
</form>
"""


class ReviewView(TortoiseModelView):
    writable = False
    menu_label = "Reviews"
    icon = "fa fa-star"
    fields = [
        UUIDField("id", label="Id"),
        IntegerField("rating", label="Stars"),
        TextAreaField("text"),
        HasOne("cleaner", key="user"),
        HasOne("client", key="user"),
        HasOne("booking", key="booking", exclude_from_list=True),
        TextAreaField("reply", label="Cleaner's reply", exclude_from_list=True),
        BooleanField("hidden", read_only=True, getter=lambda request, review: review.hidden_at is not None),
        DateTimeField("hidden_at", label="Hidden since", exclude_from_list=True),
        TextAreaField("hidden_reason", label="Why hidden", exclude_from_list=True),
        DateTimeField("created_at", label="Written"),
    ]
    searchable_fields = ["id", "text", "rating", "cleaner", "client", "created_at"]
    sortable_fields = ["rating", "created_at"]
    fields_default_sort = [("created_at", True)]
    row_actions = ["view", "hide", "restore"]
    actions = ["hide", "restore"]

    def __init__(self) -> None:
        super().__init__(Review)

    async def repr(self, obj: Any, request: Request) -> str:
        return f"{obj.rating}-star review {obj.id}"

    async def is_row_action_allowed_for_obj(self, request: Request, name: str, obj: Any) -> bool:
        if name == "hide":
            return obj.hidden_at is None
        if name == "restore":
            return obj.hidden_at is not None
        return await super().is_row_action_allowed_for_obj(request, name, obj)

    @row_action(name="hide", text="Hide", icon_class="fa fa-eye-slash",
                confirmation="Hide this review? It leaves the cleaner's page and rating.", submit_btn_text="Hide",
                form=HIDE_FORM)
    async def hide_one(self, request: Request, pk: Any) -> None:
        await self._set_hidden(request, [pk], hidden=True)

    @row_action(name="restore", text="Restore", icon_class="fa fa-eye",
                confirmation="Show this review again and count it in the rating?", submit_btn_text="Restore")
    async def restore_one(self, request: Request, pk: Any) -> None:
        await self._set_hidden(request, [pk], hidden=False)

    @action(name="hide", text="Hide reviews", confirmation="Hide the selected reviews?", submit_btn_text="Hide",
            form=HIDE_FORM)
    async def hide_selected(self, request: Request, selection: ActionSelection) -> None:
        await self._set_hidden(request, await selection.pks(), hidden=True)

    @action(name="restore", text="Restore reviews", confirmation="Restore the selected reviews?",
            submit_btn_text="Restore")
    async def restore_selected(self, request: Request, selection: ActionSelection) -> None:
        await self._set_hidden(request, await selection.pks(), hidden=False)

    async def _set_hidden(self, request: Request, pks: list[Any], *, hidden: bool) -> None:
        async with request.form() as form:
            reason = str(form.get("reason") or "")
        for pk in pks:
            await reviews.set_review_hidden(self._key(pk), actor=current_staff(request), hidden=hidden,
                                            reason=reason)
        verb = "Hid" if hidden else "Restored"
        flash(request, f"{verb} {len(pks)} review{'s' if len(pks) != 1 else ''}.", "success")
