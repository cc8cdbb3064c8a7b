"""Chat rules: what a message may contain, who takes part, how seqs and read cursors move. Pure.

A conversation is the chat of one booking; its participants are exactly the booking's client
and cleaner. Messages are numbered 1, 2, 3, ... per conversation without gaps; a client retries
a send with the same `client_msg_id` and gets the first message back. A message may carry one
image its sender uploaded to the same conversation (then its body may be empty); an image goes
with one message only.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from core.accounts import Role
from core.channels import BookingParties, Viewer, is_party
from core.errors import Conflict, Invalid, NotFound

MAX_CLIENT_MSG_ID_LENGTH = 64
_CLIENT_MSG_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class ChatError(StrEnum):
    EMPTY_MESSAGE = "empty_message"
    MESSAGE_TOO_LONG = "message_too_long"
    BAD_CLIENT_MSG_ID = "bad_client_msg_id"
    CONVERSATION_NOT_FOUND = "conversation_not_found"
    ATTACHMENT_NOT_FOUND = "attachment_not_found"
    ATTACHMENT_USED = "attachment_used"
    ATTACHMENT_REFUSED = "attachment_refused"


def check_participant(viewer: Viewer, parties: BookingParties | None) -> BookingParties:
    """The conversation's parties; NotFound (never Forbidden: no existence leak) for others."""
    if parties is None or not is_party(viewer, parties):
        raise NotFound("no such conversation", code=ChatError.CONVERSATION_NOT_FOUND)
    return parties


def check_may_see_attachments(viewer: Viewer, parties: BookingParties | None) -> BookingParties:
    """Attachment files are for the parties, and for admins (who may join any conversation's
    channel to settle a dispute, but never post in it); NotFound for everyone else."""
    if parties is not None and viewer.role == Role.ADMIN:
        return parties
    return check_participant(viewer, parties)


def check_message(body: str, client_msg_id: str, *, max_chars: int, has_attachment: bool = False) -> str:
    """The body to store (empty only beside an attachment); raise Invalid naming the wrong field."""
    if not isinstance(client_msg_id, str) or not _CLIENT_MSG_ID.match(client_msg_id):
        raise Invalid("must be 1-64 characters of letters, digits and . _ : -",
                      field="client_msg_id", code=ChatError.BAD_CLIENT_MSG_ID)
    if not isinstance(body, str):
        raise Invalid("must be a string", field="body", code=ChatError.EMPTY_MESSAGE)
    body = unicodedata.normalize("NFC", body).strip()
    if not body and not has_attachment:
        raise Invalid("must not be empty", field="body", code=ChatError.EMPTY_MESSAGE)
    if len(body) > max_chars:
        raise Invalid(f"must be at most {max_chars} characters", field="body",
                      code=ChatError.MESSAGE_TOO_LONG)
    if any(unicodedata.category(ch) in {"Cc", "Cs"} and ch not in "\n\t" for ch in body):
        raise Invalid("must not contain control characters", field="body")
    return body


def check_attachment(found: dict[str, str] | None, *, conversation_id: str, sender_id: str,
                     used_by: tuple[str, str] | None, client_msg_id: str) -> None:
    """May this message carry the attachment `found` ({conversation_id, uploaded_by_id, status},
    None when there is no such attachment)? Someone else's image, or one of another
    conversation, is as good as missing (422); one already sent with another message is a 409.
    `used_by` is the (sender, client_msg_id) of the message that carries it: a retry of that
    very message is allowed through (it is answered with the first message)."""
    if found is None or found["conversation_id"] != conversation_id or found["uploaded_by_id"] != sender_id:
        raise Invalid("no such attachment of yours in this conversation", field="attachment_id",
                      code=ChatError.ATTACHMENT_NOT_FOUND)
    if used_by is not None and used_by != (sender_id, client_msg_id):
        raise Conflict("the attachment was sent with another message already", code=ChatError.ATTACHMENT_USED)
    if found["status"] == "refused":
        raise Invalid("the image could not be processed; upload it again", field="attachment_id",
                      code=ChatError.ATTACHMENT_REFUSED)


def next_seqs(last_seq: int, count: int) -> list[int]:
    """The seqs of `count` new messages after `last_seq`: consecutive, so none is ever skipped."""
    return list(range(last_seq + 1, last_seq + 1 + count))


def read_cursor_after(current: int, requested: int, *, last_seq: int) -> int:
    """Cursors only move forward and never past the last message."""
    if requested < 0:
        raise Invalid("must be zero or more", field="seq")
    return max(current, min(requested, last_seq))


def check_page(after_seq: int | None, before_seq: int | None) -> None:
    if after_seq is not None and after_seq < 0:
        raise Invalid("must be zero or more", field="after_seq")
    if before_seq is not None and before_seq < 1:
        raise Invalid("must be one or more", field="before_seq")
