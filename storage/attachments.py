"""Chat attachments: an image a party uploads to a conversation, to send with a message.

The pattern is completion evidence's (storage/evidence.py): the bytes are judged by their
content (core.supply.check_upload) and go to the file store before the transaction, which writes
the row (processing), its audit entry and the images job's event together, and deletes the file
again if it fails. The images job replaces the original (EXIF, GPS and all) by the upright,
EXIF-free copy through storage.evidence's shared `record_processed`; what the EXIF said stays in
the row. Only processed files are ever served. Messages carry attachments (storage/chat.py);
which message may carry which attachment is core.chat's rule, checked by the ConversationShard.
"""

from __future__ import annotations

import hashlib
from uuid import UUID

from tortoise.transactions import in_transaction

from core.channels import Viewer
from core.chat import ChatError, check_may_see_attachments
from core.errors import NotFound
from core.events import EventType
from core.ids import new_id
from core.settings import Settings
from core.supply import EXTENSIONS, IMAGE_TYPES
from storage import audit, chat, evidence, outbox
from storage.files import FileStore, judge_upload
from storage.models import ChatAttachment

ATTACHMENT_PREFIX = "chat"


async def add_attachment(conversation_id: str, *, viewer: Viewer, data: bytes, settings: Settings,
                         store: FileStore) -> ChatAttachment:
    """A party uploads an image to the conversation; the images job is asked to process it.
    Admins are not parties: like messages, they cannot post (404, as for strangers)."""
    parties = await chat.conversation_for(viewer, conversation_id)
    content_type = await judge_upload(data, allowed=IMAGE_TYPES, max_bytes=settings.chat_attachment_max_bytes,
                                      settings=settings, field="file")
    key = await store.put(data, prefix=ATTACHMENT_PREFIX, extension=EXTENSIONS[content_type])
    try:
        async with in_transaction() as tx:
            # The conversation's row appears on its first message or attachment, whichever is first.
            await tx.execute_query(
                "INSERT INTO chat_conversations (id, client_id, cleaner_id) VALUES ($1, $2, $3) "
                "ON CONFLICT (id) DO NOTHING", [conversation_id, parties.client_id, parties.cleaner_id])
            attachment = await ChatAttachment.create(
                id=new_id(), conversation_id=conversation_id, uploaded_by_id=viewer.user_id, storage_key=key,
                content_type=content_type, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                using_db=tx)
            await audit.record(actor_id=UUID(viewer.user_id), action="chat.attachment_added",
                               entity_type="conversation", entity_id=UUID(conversation_id),
                               after={"attachment_id": str(attachment.id)}, using=tx)
            await outbox.enqueue(EventType.IMAGE_UPLOADED, {"image_id": str(attachment.id), "key": key,
                                                            "kind": "chat_attachment",
                                                            "owner_id": viewer.user_id}, using=tx)
    except BaseException:
        await store.delete(key)
        raise
    return attachment


async def read_attachment_file(conversation_id: str, attachment_id: UUID, *, viewer: Viewer, size: str | None,
                               store: FileStore) -> tuple[ChatAttachment, str, bytes]:
    """One attachment (or one of its thumbnails) for a party or an admin: (row, content type,
    bytes). Only processed images are served, so no file with its EXIF ever leaves the server."""
    check_may_see_attachments(viewer, await chat.load_booking_parties(conversation_id))
    attachment = await ChatAttachment.get_or_none(id=attachment_id, conversation_id=conversation_id)
    if attachment is None:
        raise NotFound("no such attachment", code=ChatError.ATTACHMENT_NOT_FOUND)
    content_type, data = await evidence.read_processed_image(attachment, size=size, store=store,
                                                             noun="attachment", code_prefix="attachment")
    return attachment, content_type, data


# --- what the images job found (the columns and the rules are completion evidence's) ---


async def awaits_processing(attachment_id: UUID) -> bool:
    return await evidence.awaits_processing(attachment_id, model=ChatAttachment)


async def record_processed(attachment_id: UUID, result: evidence.ProcessedEvidence, *, store: FileStore) -> bool:
    """Point the row at the clean copy, keep the metadata, delete the original; idempotent."""
    return await evidence.record_processed(attachment_id, result, store=store, model=ChatAttachment,
                                           booking_field="conversation_id")


async def record_refused(attachment_id: UUID, *, reason: str) -> None:
    await evidence.record_refused(attachment_id, reason=reason, model=ChatAttachment)
