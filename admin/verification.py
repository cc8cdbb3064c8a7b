"""The cleaner verification queue: who waits for an identity check, their document, the verdict.

The queue is the cleaners whose verification is pending, longest waiting first. Staff open the
document through `storage.supply.read_verification_document`, which records each reading in the
audit trail, and approve or reject through `storage.supply.decide_verification`, which applies
the rules (a rejection needs a reason) and writes the audit row and the outbox event. This page
never changes a profile or a document itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response
from starlette_admin import (
    ActionSelection,
    ComputedField,
    DateTimeField,
    URLField,
    UUIDField,
    action,
    flash,
    row_action,
)

from admin.auth import current_staff
from admin.tortoise_view import TortoiseModelView
from core.errors import Invalid
from core.settings import Settings
from core.supply import EXTENSIONS, VerificationStatus
from storage import supply
from storage.files import file_store
from storage.models import CleanerProfile, User, VerificationDocument

REJECT_FORM = """
<form>
  <div class="mt-3">
    <label class="form-label" for="reject-reason">Reason (the cleaner is told it)</label>
    <textarea class="form-control" id="reject-reason" name="reason" maxlength="500" rows="2"></textarea>
  </div>
</form>
"""


@dataclass(frozen=True)
class QueueEntry:
    """One waiting cleaner: the profile, the account, and their newest pending document."""

    profile: CleanerProfile
    user: User | None
    document_id: UUID | None

    @property
    def user_id(self) -> UUID:
        return self.profile.user_id

    @property
    def verification_changed_at(self) -> datetime:
        return self.profile.verification_changed_at


class VerificationQueueView(TortoiseModelView):
    writable = False
    key = "verification-queue"
    menu_label = "Verification queue"
    display_name = "Pending verification"
    icon = "fa fa-id-card"
    fields = [
        UUIDField("user_id", label="Cleaner id"),
        ComputedField("name", getter=lambda request, entry: entry.user and entry.user.name),
        ComputedField("email", getter=lambda request, entry: entry.user and entry.user.email),
        URLField("document", label="Document", read_only=True,
                 getter=lambda request, entry: document_url(request, entry)),
        DateTimeField("verification_changed_at", label="Waiting since"),
    ]
    searchable_fields: list[str] = []
    sortable_fields = ["verification_changed_at"]
    fields_default_sort = [("verification_changed_at", False)]  # longest waiting first
    exporters: list[Any] = []
    row_actions = ["view", "approve", "reject"]
    actions = ["approve", "reject"]

    def __init__(self, settings: Settings) -> None:
        super().__init__(CleanerProfile)
        self.settings = settings

    def get_list_query(self, request: Request) -> Any:
        return CleanerProfile.filter(verification_status=VerificationStatus.PENDING)

    def get_count_query(self, request: Request) -> Any:
        return self.get_list_query(request)

    async def find_all(self, request: Request, *args: Any, **kwargs: Any) -> list[QueueEntry]:
        return await self._entries(await super().find_all(request, *args, **kwargs))

    async def find_by_pk(self, request: Request, pk: Any) -> QueueEntry | None:
        profile = await super().find_by_pk(request, pk)
        return (await self._entries([profile]))[0] if profile is not None else None

    async def find_by_pks(self, request: Request, pks: list[Any]) -> list[QueueEntry]:
        return await self._entries(await super().find_by_pks(request, pks))

    async def repr(self, obj: Any, request: Request) -> str:
        return f"{obj.user.name} <{obj.user.email}>" if obj.user else str(obj.user_id)

    async def _entries(self, profiles: Any) -> list[QueueEntry]:
        """The page's profiles with their accounts and newest pending documents: two queries."""
        ids = [p.user_id for p in profiles]
        users = {u.id: u for u in await User.filter(id__in=ids)}
        newest: dict[UUID, UUID] = {}
        for cleaner_id, document_id in await VerificationDocument.filter(
                cleaner_id__in=ids, status=VerificationStatus.PENDING).order_by(
                "created_at").values_list("cleaner_id", "id"):
            newest[cleaner_id] = document_id
        return [QueueEntry(p, users.get(p.user_id), newest.get(p.user_id)) for p in profiles]

    # --- the verdict, one cleaner (row) or a selection (batch) ---

    @row_action(name="approve", text="Approve", icon_class="fa fa-check",
                confirmation="Approve this cleaner's identity? They can take bookings at once.",
                submit_btn_text="Approve")
    async def approve_one(self, request: Request, pk: Any) -> None:
        await self._decide(request, [pk], decision="approve")

    @row_action(name="reject", text="Reject", icon_class="fa fa-times",
                confirmation="Reject this cleaner's document?", submit_btn_text="Reject",
                form=REJECT_FORM)
    async def reject_one(self, request: Request, pk: Any) -> None:
        await self._decide(request, [pk], decision="reject")

    @action(name="approve", text="Approve cleaners",
            confirmation="Approve the selected cleaners' identities?", submit_btn_text="Approve")
    async def approve_selected(self, request: Request, selection: ActionSelection) -> None:
        await self._decide(request, await selection.pks(), decision="approve")

    @action(name="reject", text="Reject cleaners", confirmation="Reject the selected cleaners' documents?",
            submit_btn_text="Reject", form=REJECT_FORM)
    async def reject_selected(self, request: Request, selection: ActionSelection) -> None:
        await self._decide(request, await selection.pks(), decision="reject")

    async def _decide(self, request: Request, pks: list[Any], *, decision: str) -> None:
        async with request.form() as form:
            reason = str(form.get("reason") or "")
        for pk in pks:
            await supply.decide_verification(cleaner_id=self._key(pk), decision=decision, reason=reason,
                                             actor=current_staff(request))
        verb = "Approved" if decision == "approve" else "Rejected"
        flash(request, f"{verb} {len(pks)} cleaner{'s' if len(pks) != 1 else ''}.", "success")

    # --- the document, served like the API serves it ---

    async def download_document(self, request: Request) -> Response:
        """GET <admin>/verification-queue/document?pk=<cleaner>&document=<id>; the read is audited."""
        document, data = await supply.read_verification_document(
            cleaner_id=self._key(request.query_params.get("pk")),
            document_id=parse_document_id(request.query_params.get("document")),
            actor=current_staff(request), store=file_store(self.settings))
        filename = f"{document.id}{EXTENSIONS.get(document.content_type, '')}"
        return Response(data, media_type=document.content_type, headers={
            "Content-Disposition": f'attachment; filename="{filename}"', "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store"})


def document_url(request: Request, entry: QueueEntry) -> str | None:
    if entry.document_id is None:
        return None
    return str(request.url_for("admin:verification-document").include_query_params(
        pk=str(entry.user_id), document=str(entry.document_id)))


def parse_document_id(raw: str | None) -> UUID:
    try:
        return UUID(str(raw))
    except ValueError:
        raise Invalid("must be a document id (a UUID)", field="document") from None
