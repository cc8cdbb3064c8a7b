"""Chat transcripts of disputed bookings, read-only, for staff settling the dispute.

Only conversations whose booking is disputed are listed; any other conversation stays private
to its two parties, even by id. Opening a transcript is recorded in the audit trail (who read
which conversation, when), as reading a cleaner's identity document is. Messages come from
PostgreSQL, oldest first, as the parties saw them; nothing here can send, edit or delete one.
A message's image is described (type, size, state, id, and when and where the EXIF says it was
taken); its file is served by the API to admins (GET /api/v1/conversations/{id}/attachments/...).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette_admin import (
    ComputedField,
    DateTimeField,
    HasOne,
    IntegerField,
    TextAreaField,
    URLField,
    UUIDField,
)
from starlette_admin.contrib.tortoise import InlineModelView
from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from admin.tortoise_view import TortoiseModelView
from core.bookings import BookingState
from storage.models import Booking, ChatMessage, Conversation

TRANSCRIPT_MAX_MESSAGES = 5000


def describe_attachment(request: Request, message: Any) -> str:
    """One line about a message's image, or nothing when it has none."""
    image = message.attachment
    if image is None:
        return ""
    parts = [f"{image.content_type}, {image.status}"]
    if image.width:
        parts.append(f"{image.width}x{image.height}")
    if image.captured_at:
        parts.append(f"taken {image.captured_at.isoformat()}")
    if image.gps_lat is not None:
        parts.append(f"at {image.gps_lat:.5f},{image.gps_lng:.5f}")
    return f"Image {image.id} ({'; '.join(parts)})"


class Transcript(InlineModelView):
    """The conversation's messages, oldest first, on its detail page."""

    model = ChatMessage  # type: ignore[misc]  # starlette-admin declares it a ClassVar
    fk_attr = "conversation"
    menu_label = "Transcript"
    fields = [
        IntegerField("seq", label="#"),
        DateTimeField("created_at", label="Sent"),
        HasOne("sender", key="user", label="From"),
        TextAreaField("body", label="Message"),
        ComputedField("image", label="Image", getter=describe_attachment),
    ]

    def can_create(self, request: Request) -> bool:
        return False

    def can_edit(self, request: Request) -> bool:
        return False

    def can_delete(self, request: Request) -> bool:
        return False

    async def find_by_parent(self, request: Request, parent: Any) -> Any:
        messages = await ChatMessage.filter(conversation_id=parent.id).order_by("seq").limit(
            TRANSCRIPT_MAX_MESSAGES)
        await ChatMessage.fetch_for_list(messages, "sender", "attachment")
        return messages


class DisputedConversationView(TortoiseModelView):
    writable = False
    key = "dispute-conversation"
    audit_entity = "conversation"
    menu_label = "Dispute chats"
    display_name = "Dispute conversation"
    icon = "fa fa-comments"
    fields = [
        UUIDField("id", label="Booking id"),
        HasOne("client", key="user"),
        HasOne("cleaner", key="user"),
        IntegerField("last_seq", label="Messages"),
        DateTimeField("last_message_at", label="Last message"),
        URLField("booking", label="Booking", read_only=True, exclude_from_list=True,
                 getter=lambda request, obj: str(request.url_for("admin:detail", key="booking")
                                                 .include_query_params(pk=str(obj.id)))),
    ]
    searchable_fields = ["id", "client", "cleaner", "last_message_at"]
    sortable_fields = ["last_message_at", "last_seq"]
    fields_default_sort = [("last_message_at", True)]
    inlines = [Transcript]
    row_actions = ["view"]
    actions: list[str] = []

    def __init__(self) -> None:
        super().__init__(Conversation)

    def get_list_query(self, request: Request) -> Any:
        disputed = Booking.filter(state=BookingState.DISPUTED).values("id")
        return Conversation.filter(id__in=Subquery(disputed))

    def get_count_query(self, request: Request) -> Any:
        return self.get_list_query(request)

    def get_detail_query(self, request: Request) -> Any:
        return self.get_list_query(request)

    async def repr(self, obj: Any, request: Request) -> str:
        return f"Chat of disputed booking {obj.id}"

    async def find_by_pk(self, request: Request, pk: Any) -> Any:
        conversation = await super().find_by_pk(request, pk)
        if conversation is not None and request.state.action == "DETAIL":
            async with in_transaction() as tx:
                await self.record(request, "read", conversation.id, using=tx,
                                  after={"messages": conversation.last_seq})
        return conversation
