"""Chat sends over the socket: a party triggers `client-chat-message` with
`{"client_msg_id": …, "body": …, "attachment_id"?: …}` on the conversation's
`presence-conversation.{id}` channel (pusher-js: `channel.trigger`).

The same send as `POST /api/v1/conversations/{id}/messages`, through the same ConversationShard
(persisted, then acknowledged, then fanned out as `chat.message` with its seq), without an HTTP
request and a token lookup per message: the sender is the user the auth endpoint signed into the
channel's presence data when the socket subscribed, and a suspended account is refused at once
(by the conversation shard, in the statement that writes the batch). The sender alone gets the answer on the
channel: `chat.sent` `{client_msg_id, seq, created}` or `chat.send_failed`
`{client_msg_id, status, code, detail}` — for malformed data too (a 422, as REST answers it),
whenever it carries a usable `client_msg_id`; without one there is nothing to answer against, and
the protocol's `pusher:error` 4301 says what is wrong. The event itself is never fanned out.
"""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

from pydantic import Field

from core.channels import conversation_channel
from core.errors import Invalid, SpotlessError
from core.events import RealtimeEvent
from edge.chat import SendBody
from edge.realtime.errors import ClientEventRejected
from edge.realtime.protocol import encode
from edge.validation import validate

CHAT_SEND_EVENT = "client-chat-message"
CONVERSATION_PREFIX = conversation_channel("")


class ChatSender(Protocol):
    async def send(self, conversation_id: str, *, sender_id: str, client_msg_id: str, body: str,
                   attachment_id: str | None = None) -> tuple[dict[str, Any], bool]: ...


class SocketSendBody(SendBody):
    client_msg_id: str = Field(min_length=1, max_length=64)


async def send_over_socket(channel: str, data: Any, *, sender_id: str, chat: ChatSender) -> str:
    """Send one message for `sender_id`; return the frame that answers the sender."""
    if not channel.startswith(CONVERSATION_PREFIX):
        raise ClientEventRejected(f"Client event rejected: send {CHAT_SEND_EVENT} on a conversation channel")
    try:
        conversation_id = str(UUID(channel[len(CONVERSATION_PREFIX):]))
    except ValueError:
        raise ClientEventRejected("Client event rejected: no such conversation") from None
    try:
        body = validate(SocketSendBody, data)
    except Invalid as exc:
        if not isinstance(data, dict) or any(e.field == "client_msg_id" for e in exc.errors):
            # No usable client_msg_id: nothing to answer against, so the protocol's error.
            first = exc.errors[0]
            raise ClientEventRejected(f"Client event rejected: {first.field}: {first.message}") from None
        # A send the app can tell apart gets its answer as REST would give it (a 422).
        return _send_failed(channel, data["client_msg_id"], exc)
    try:
        message, created = await chat.send(conversation_id, sender_id=sender_id,
                                           client_msg_id=body.client_msg_id, body=body.body,
                                           attachment_id=body.attachment_id)
    except SpotlessError as exc:
        return _send_failed(channel, body.client_msg_id, exc)
    return encode(RealtimeEvent.CHAT_SENT, {"client_msg_id": body.client_msg_id, "seq": message["seq"],
                                            "created": created}, channel=channel)


def _send_failed(channel: str, client_msg_id: str, exc: SpotlessError) -> str:
    return encode(RealtimeEvent.CHAT_SEND_FAILED, {
        "client_msg_id": client_msg_id, "status": exc.status, "code": str(exc.code), "detail": exc.detail},
        channel=channel)
