"""Chat actions and queries: conversations, messages and read cursors in PostgreSQL.

Writes come from the ConversationShard that owns the conversation (the serialiser of its seqs);
reads come from the edge. Who takes part is decided by core.chat / core.channels from the
booking's parties, which `load_booking_parties` loads. Nothing here publishes to NATS. A message
read from here carries its attachment's current state (storage/attachments.py uploads them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from tortoise import connections

from core.channels import BookingParties, Viewer, conversation_channel
from core.chat import check_participant
from core.errors import Invalid
from core.events import EventType, PushCategory
from core.pagination import decode_cursor, encode_cursor
from storage import outbox

_MESSAGE_COLUMNS = ("m.id, m.conversation_id::text AS conversation_id, m.seq, m.sender_id::text AS sender_id, "
                    "m.client_msg_id, m.body, m.created_at, m.attachment_id::text AS attachment_id, "
                    "a.status AS attachment_status, a.content_type AS attachment_content_type, "
                    "a.width AS attachment_width, a.height AS attachment_height, "
                    "a.thumbnails AS attachment_thumbnails")
_PUSH_IDS = UUID("5b0c8f3e-2a61-4c9e-9d1e-7f3a0c6b2d48")  # namespace of push_event_id
_MESSAGES = "chat_messages m LEFT JOIN chat_attachments a ON a.id = m.attachment_id"


@dataclass(frozen=True)
class Draft:
    """A message about to be written, with the seq its shard gave it."""

    seq: int
    sender_id: str
    client_msg_id: str
    body: str
    attachment_id: str | None = None


@dataclass(frozen=True)
class ConversationSnapshot:
    id: str
    parties: BookingParties
    last_seq: int
    cursors: dict[str, int]
    recent: list[dict[str, Any]]


def _uuid_or_none(raw: str) -> str | None:
    try:
        return str(UUID(str(raw)))
    except ValueError:
        return None


def attachment_json(conversation_id: str, attachment_id: str, *, status: str, content_type: str,
                    width: int | None, height: int | None, thumbnails: Any) -> dict[str, Any]:
    """An attachment as the apps show it: file URLs once the images job has made safe copies."""
    if isinstance(thumbnails, str):
        thumbnails = json.loads(thumbnails)
    base = f"/api/v1/conversations/{conversation_id}/attachments/{attachment_id}/file"
    ready = status == "ready"
    return {"id": attachment_id, "status": status, "content_type": content_type, "width": width,
            "height": height, "url": base if ready else None,
            "thumbnails": {size: f"{base}?size={size}" for size in sorted(thumbnails or {}, key=int)}
            if ready else {}}


def message_dict(row: Any) -> dict[str, Any]:
    attachment = None
    if row["attachment_id"] is not None:
        attachment = attachment_json(
            row["conversation_id"], row["attachment_id"], status=row["attachment_status"],
            content_type=row["attachment_content_type"], width=row["attachment_width"],
            height=row["attachment_height"], thumbnails=row["attachment_thumbnails"])
    return {
        "id": row["id"], "conversation_id": row["conversation_id"], "seq": row["seq"],
        "sender_id": row["sender_id"], "client_msg_id": row["client_msg_id"], "body": row["body"],
        "attachment": attachment, "created_at": row["created_at"].isoformat(),
    }


async def _query(sql: str, *params: Any, using: Any = None) -> list[Any]:
    conn = using or connections.get("default")
    rows: list[Any] = await conn.execute_query_dict(sql, list(params))  # fetches RETURNING too
    return rows


async def load_booking_parties(booking_id: str) -> BookingParties | None:
    """The booking's client and cleaner (None when there is no such booking)."""
    booking = _uuid_or_none(booking_id)
    if booking is None:
        return None
    rows = await _query("SELECT client_id::text AS client_id, cleaner_id::text AS cleaner_id "
                        "FROM bookings WHERE id = $1", booking)
    return BookingParties(rows[0]["client_id"], rows[0]["cleaner_id"]) if rows else None


async def conversation_for(viewer: Viewer, conversation_id: str) -> BookingParties:
    """The parties of a conversation the viewer takes part in; NotFound otherwise."""
    return check_participant(viewer, await load_booking_parties(conversation_id))


async def open_conversation(conversation_id: str, *, recent: int) -> ConversationSnapshot | None:
    """Load (creating its row on first use) a conversation with its last `recent` messages."""
    parties = await load_booking_parties(conversation_id)
    if parties is None:
        return None
    conversation_id = str(UUID(conversation_id))
    await _query(
        "INSERT INTO chat_conversations (id, client_id, cleaner_id) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO NOTHING", conversation_id, parties.client_id, parties.cleaner_id)
    last = await _query("SELECT last_seq FROM chat_conversations WHERE id = $1", conversation_id)
    cursors = await _query(
        "SELECT user_id::text AS user_id, seq FROM chat_read_cursors WHERE conversation_id = $1",
        conversation_id)
    rows = await _query(
        f"SELECT {_MESSAGE_COLUMNS} FROM {_MESSAGES} WHERE m.conversation_id = $1 "
        "ORDER BY m.seq DESC LIMIT $2", conversation_id, recent)
    return ConversationSnapshot(conversation_id, parties, int(last[0]["last_seq"]),
                                {r["user_id"]: int(r["seq"]) for r in cursors},
                                [message_dict(r) for r in reversed(rows)])


async def find_sent(conversation_id: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Messages already stored under these (sender id, client_msg_id) keys."""
    if not keys:
        return {}
    rows = await _query(
        f"SELECT {_MESSAGE_COLUMNS} FROM {_MESSAGES} JOIN unnest($2::text[], $3::text[]) "
        "AS k(sender, cmid) ON m.sender_id = k.sender::uuid AND m.client_msg_id = k.cmid "
        "WHERE m.conversation_id = $1",
        conversation_id, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["sender_id"], r["client_msg_id"]): message_dict(r) for r in rows}


async def append_messages(conversation_id: str, drafts: list[Draft], *, parties: BookingParties,
                          push_hold_s: float = 0.0) -> list[dict[str, Any]]:
    """Write one conversation's messages; see append_batch."""
    return (await append_batch([(conversation_id, drafts, parties)], push_hold_s=push_hold_s))[0]


def push_event_id(conversation_id: str, seq: int) -> UUID:
    """The event id of the push request a message writes: known without reading it back, so the
    conversation shard can withdraw it when the recipient turns out to be watching."""
    return uuid5(_PUSH_IDS, f"{conversation_id}:{seq}")


def recipient_of(sender_id: str, parties: BookingParties) -> str:
    return parties.cleaner_id if sender_id == parties.client_id else parties.client_id


async def append_batch(
    batch: list[tuple[str, list[Draft], BookingParties]], *, push_hold_s: float = 0.0,
) -> list[list[dict[str, Any]]]:
    """Write the messages of many conversations and advance each one's last seq in one
    statement (an INSERT of all rows, an UPDATE, an outbox insert: a push notification for
    the other party of each message, held back `push_hold_s` so that it can still be withdrawn,
    `withdraw_pushes`, when that party is watching the conversation). Returns each
    conversation's messages in seq order. Raises IntegrityError on a seq clash or a
    client_msg_id already stored, and SendersSuspended when a sender's account is suspended
    (checked in the same statement, so a send over a socket opened before the suspension is
    refused without a query of its own); nothing is written."""
    ids, seqs, senders, client_msg_ids, bodies = [], [], [], [], []
    attachments: list[str | None] = []
    pushes: list[dict[str, Any]] = []
    push_ids: list[str] = []
    for conversation_id, drafts, parties in batch:
        for draft in drafts:
            ids.append(conversation_id)
            seqs.append(draft.seq)
            senders.append(draft.sender_id)
            client_msg_ids.append(draft.client_msg_id)
            bodies.append(draft.body)
            attachments.append(draft.attachment_id)
            push_ids.append(str(push_event_id(conversation_id, draft.seq)))
            pushes.append({
                "user_ids": [recipient_of(draft.sender_id, parties)], "category": PushCategory.CHAT,
                "title": "New message", "body": draft.body[:140] or "Sent a photo",
                "data": {"route": f"/conversations/{conversation_id}", "seq": str(draft.seq)},
            })
    # One statement, so one round trip and its own transaction: data-modifying CTEs all apply or
    # none does (a unique-key clash rolls back the update and the outbox rows too).
    allowed = "NOT EXISTS (SELECT 1 FROM suspended)"
    rows = await _query(
        "WITH suspended AS (SELECT 1 FROM users WHERE id = ANY($3::text[]::uuid[]) "
        "AND suspended_at IS NOT NULL LIMIT 1), "
        "m AS (INSERT INTO chat_messages (conversation_id, seq, sender_id, client_msg_id, body, "
        "attachment_id) SELECT c::uuid, s, snd::uuid, cm, b, att::uuid "
        "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) "
        f"AS t(c, s, snd, cm, b, att) WHERE {allowed} RETURNING *), "
        "c AS (UPDATE chat_conversations c SET last_seq = t.seq, last_message_at = now() "
        f"FROM unnest($7::text[], $8::bigint[]) AS t(id, seq) WHERE c.id = t.id::uuid AND {allowed}), "
        f"o AS ({outbox.insert_many_sql(type_param=9, ids_param=10, payloads_param=11, hold_param=12, where=allowed)}) "
        f"SELECT {_MESSAGE_COLUMNS} FROM m LEFT JOIN chat_attachments a ON a.id = m.attachment_id",
        ids, seqs, senders, client_msg_ids, bodies, attachments,
        [cid for cid, _, _ in batch], [max(d.seq for d in drafts) for _, drafts, _ in batch],
        str(EventType.PUSH_REQUESTED), push_ids, [json.dumps(p) for p in pushes], float(push_hold_s))
    if not rows and ids:
        raise SendersSuspended(await suspended_among(senders))
    by_conversation: dict[str, list[dict[str, Any]]] = {cid: [] for cid, _, _ in batch}
    for row in rows:
        by_conversation[row["conversation_id"]].append(message_dict(row))
    return [sorted(by_conversation[cid], key=lambda m: m["seq"]) for cid, _, _ in batch]


class SendersSuspended(Exception):
    """A batch named senders whose accounts are suspended; nothing was written."""

    def __init__(self, sender_ids: set[str]) -> None:
        super().__init__(f"{len(sender_ids)} suspended sender(s)")
        self.sender_ids = sender_ids


async def suspended_among(user_ids: list[str]) -> set[str]:
    """Which of these accounts are suspended."""
    rows = await _query("SELECT id::text AS id FROM users WHERE id = ANY($1::text[]::uuid[]) "
                        "AND suspended_at IS NOT NULL", sorted(set(user_ids)))
    return {row["id"] for row in rows}


async def withdraw_pushes(messages: list[tuple[str, int]]) -> int:
    """Take back the push requests of (conversation_id, seq) messages that are still held."""
    return await outbox.withdraw([push_event_id(cid, seq) for cid, seq in messages],
                                 using=connections.get("default"))


async def find_attachments(ids: list[str]) -> dict[str, dict[str, Any]]:
    """The attachments named by a batch of sends, in one query: each one's conversation,
    uploader and status, and the (sender, client_msg_id) of the message carrying it, if any."""
    valid = sorted({i for i in (_uuid_or_none(raw) for raw in ids) if i is not None})
    if not valid:
        return {}
    rows = await _query(
        "SELECT a.id::text AS id, a.conversation_id::text AS conversation_id, "
        "a.uploaded_by_id::text AS uploaded_by_id, a.status, m.sender_id::text AS used_sender, "
        "m.client_msg_id AS used_client_msg_id FROM chat_attachments a "
        "LEFT JOIN chat_messages m ON m.attachment_id = a.id WHERE a.id = ANY($1::uuid[])", valid)
    return {r["id"]: r for r in rows}


async def advance_read_cursor(conversation_id: str, user_id: str, seq: int) -> int:
    """Move a participant's read cursor forward to `seq` (never back); return where it is."""
    rows = await _query(
        "INSERT INTO chat_read_cursors (conversation_id, user_id, seq) VALUES ($1, $2, $3) "
        "ON CONFLICT (conversation_id, user_id) DO UPDATE SET "
        "seq = GREATEST(chat_read_cursors.seq, EXCLUDED.seq), updated_at = now() RETURNING seq",
        conversation_id, user_id, seq)
    return int(rows[0]["seq"])


async def list_messages(conversation_id: str, *, after_seq: int | None, before_seq: int | None,
                        limit: int) -> list[dict[str, Any]]:
    """A page in seq order: the first `limit` after `after_seq`, else the last before `before_seq`."""
    if after_seq is not None:
        rows = await _query(
            f"SELECT {_MESSAGE_COLUMNS} FROM {_MESSAGES} WHERE m.conversation_id = $1 AND m.seq > $2 "
            "AND ($3::bigint IS NULL OR m.seq < $3) ORDER BY m.seq LIMIT $4",
            conversation_id, after_seq, before_seq, limit)
        return [message_dict(r) for r in rows]
    rows = await _query(
        f"SELECT {_MESSAGE_COLUMNS} FROM {_MESSAGES} WHERE m.conversation_id = $1 "
        "AND ($2::bigint IS NULL OR m.seq < $2) ORDER BY m.seq DESC LIMIT $3",
        conversation_id, before_seq, limit)
    return [message_dict(r) for r in reversed(rows)]


async def list_conversations(
    viewer: Viewer, *, cursor: str | None = None, limit: int = 20
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the viewer's conversations (one per booking they are a party to), most recently
    active first, with unread counts: messages from the other party after the viewer's read
    cursor. Returns the page and the cursor of the next one (None on the last page)."""
    after = decode_cursor(cursor)
    after_at: datetime | None = None
    after_id: str | None = None
    if after is not None:
        try:
            after_at, after_id = datetime.fromisoformat(after[0]), str(UUID(after[1]))
        except (TypeError, ValueError, IndexError, KeyError):
            raise Invalid("cursor is not one this API issued", field="cursor") from None
    rows = await _query(
        """WITH mine AS (
             SELECT b.id, b.client_id, b.cleaner_id, b.state, b.starts_at,
                    COALESCE(c.last_seq, 0) AS last_seq, c.last_message_at,
                    COALESCE(c.last_message_at, b.created_at) AS active_at,
                    COALESCE(r.seq, 0) AS read_seq
             FROM bookings b
             LEFT JOIN chat_conversations c ON c.id = b.id
             LEFT JOIN chat_read_cursors r ON r.conversation_id = b.id AND r.user_id = $1::uuid
             WHERE b.client_id = $1::uuid OR b.cleaner_id = $1::uuid)
           SELECT mine.id::text AS id, mine.client_id::text AS client_id,
                  mine.cleaner_id::text AS cleaner_id, mine.state, mine.last_seq,
                  mine.last_message_at, mine.active_at, mine.read_seq,
                  other.id::text AS other_id, other.name AS other_name,
                  (SELECT count(*) FROM chat_messages m WHERE m.conversation_id = mine.id
                     AND m.seq > mine.read_seq AND m.sender_id <> $1::uuid) AS unread
           FROM mine
           JOIN users other ON other.id = CASE WHEN mine.client_id = $1::uuid THEN mine.cleaner_id
                                               ELSE mine.client_id END
           WHERE $3::timestamptz IS NULL OR (mine.active_at, mine.id) < ($3::timestamptz, $4::uuid)
           ORDER BY mine.active_at DESC, mine.id DESC LIMIT $2""",
        viewer.user_id, limit + 1, after_at, after_id)
    page = rows[:limit]
    next_cursor = (encode_cursor([page[-1]["active_at"].isoformat(), page[-1]["id"]])
                   if len(rows) > limit else None)
    return [{
        "id": r["id"], "booking_id": r["id"], "channel": conversation_channel(r["id"]),
        "client_id": r["client_id"], "cleaner_id": r["cleaner_id"], "booking_state": r["state"],
        "with": {"id": r["other_id"], "name": r["other_name"]},
        "last_seq": int(r["last_seq"]), "read_seq": int(r["read_seq"]), "unread": int(r["unread"]),
        "last_message_at": r["last_message_at"].isoformat() if r["last_message_at"] else None,
    } for r in page], next_cursor
