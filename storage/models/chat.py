"""Chat: conversations (one per booking), their messages with a per-conversation seq, read cursors,
and image attachments (processed by the images job like completion evidence)."""

from __future__ import annotations

from uuid import UUID

from tortoise import fields
from tortoise.models import Model

from storage.models.accounts import User
from storage.models.images import UploadedImage


class Conversation(Model):
    id = fields.UUIDField(primary_key=True)  # the booking's id
    client: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.RESTRICT)
    cleaner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.RESTRICT)
    last_seq = fields.BigIntField(default=0)
    last_message_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "chat_conversations"


class ChatMessage(Model):
    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="messages", on_delete=fields.CASCADE)
    seq = fields.BigIntField()
    sender: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.RESTRICT)
    client_msg_id = fields.CharField(max_length=64)
    body = fields.TextField()
    attachment: fields.OneToOneNullableRelation[ChatAttachment] = fields.OneToOneField(
        "models.ChatAttachment", related_name="message", null=True, on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "chat_messages"
        unique_together = (("conversation", "seq"), ("conversation", "sender", "client_msg_id"))


class ChatAttachment(UploadedImage):
    """One image sent in a conversation. `storage_key` is the original until processed, then its
    EXIF-free copy (the columns are booking_evidence's, so the images job treats both alike)."""

    id = fields.UUIDField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="attachments", on_delete=fields.CASCADE)
    uploaded_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, null=True, on_delete=fields.SET_NULL)

    conversation_id: UUID
    uploaded_by_id: UUID | None

    class Meta:
        table = "chat_attachments"


class ReadCursor(Model):
    id = fields.BigIntField(primary_key=True)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "models.Conversation", related_name="read_cursors", on_delete=fields.CASCADE)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name=False, on_delete=fields.CASCADE)
    seq = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "chat_read_cursors"
        unique_together = (("conversation", "user"),)
