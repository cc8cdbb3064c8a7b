"""Chat rules: what a message may contain, who takes part, how seqs and read cursors move. Pure.

A conversation is the chat of one booking; its participants are exactly the booking's client
and cleaner. Messages are numbered 1, 2, 3, ... per conversation without gaps; a client retries
a send with the same `client_msg_id` and gets the first message back.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from core.channels import BookingParties, Viewer, is_party
from core.errors import Invalid, NotFound

MAX_CLIENT_MSG_ID_LENGTH = 64
_CLIENT_MSG_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class ChatError(StrEnum):
    EMPTY_MESSAGE = "empty_message"
    MESSAGE_TOO_LONG = "message_too_long"
    BAD_CLIENT_MSG_ID = "bad_client_msg_id"
    CONVERSATION_NOT_FOUND = "conversation_not_found"


def check_participant(viewer: Viewer, parties: BookingParties | None) -> BookingParties:
    """The conversation's parties; NotFound (never Forbidden: no existence leak) for others."""
    if parties is None or not is_party(viewer, parties):
        raise NotFound("no such conversation", code=ChatError.CONVERSATION_NOT_FOUND)
    return parties


def check_message(body: str, client_msg_id: str, *, max_chars: int) -> str:
    """The body to store; raise Invalid naming the field that is wrong."""
    if not isinstance(client_msg_id, str) or not _CLIENT_MSG_ID.match(client_msg_id):
        raise Invalid("must be 1-64 characters of letters, digits and . _ : -",
                      field="client_msg_id", code=ChatError.BAD_CLIENT_MSG_ID)
    if not isinstance(body, str):
        raise Invalid("must be a string", field="body", code=ChatError.EMPTY_MESSAGE)
    body = unicodedata.normalize("NFC", body).strip()
    if not body:
        raise Invalid("must not be empty", field="body", code=ChatError.EMPTY_MESSAGE)
    if len(body) > max_chars:
        raise Invalid(f"must be at most {max_chars} characters", field="body",
                      code=ChatError.MESSAGE_TOO_LONG)
    if any(unicodedata.category(ch) in {"Cc", "Cs"} and ch not in "\n\t" for ch in body):
        raise Invalid("must not contain control characters", field="body")
    return body


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
