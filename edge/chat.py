"""/api/v1/conversations: a booking's chat over REST. Sends go through the ConversationShard
that owns the conversation (which assigns the seq); reads come straight from PostgreSQL. Images
are uploaded first (storage/attachments.py), then sent by id with a message."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from actors.conversations import ConversationRouter
from core.channels import Viewer
from core.chat import ChatError, check_page
from core.errors import Invalid, NotFound
from core.pagination import parse_limit
from core.supply import EXTENSIONS
from edge.accounts import settings_of
from edge.auth import authenticated, current_session
from edge.responses import (
    IMAGE_FILE,
    AttachmentUploaded,
    ConversationPage,
    MessageAnswer,
    MessageList,
    ReadAnswer,
    json_response,
)
from edge.staff import parse_uuid
from edge.supply import read_upload, store_of
from edge.validation import (
    LIMIT_PARAMETER,
    Body,
    RawSchema,
    openapi_body,
    openapi_upload,
    paged,
    parse_body,
)
from storage import attachments, chat

bp = Blueprint("chat", url_prefix="/api/v1/conversations")


class SendBody(Body):
    client_msg_id: str = Field(max_length=64)
    body: str = Field(default="", max_length=20_000)  # may be empty beside an attachment
    attachment_id: str | None = Field(default=None, max_length=64)  # from POST .../attachments


class ReadBody(Body):
    seq: int = Field(ge=0)


def router_of(request: Request) -> ConversationRouter:
    """This worker's router, made on first use (it looks up or creates the shard actors)."""
    ctx = request.app.ctx
    if getattr(ctx, "conversation_router", None) is None:
        ctx.conversation_router = ConversationRouter(ctx.settings, layouts=ctx.layouts)
    router: ConversationRouter = ctx.conversation_router
    return router


def viewer_of(request: Request) -> Viewer:
    user = current_session(request).user
    return Viewer(str(user.id), str(user.role))


def conversation_id(raw: str) -> str:
    try:
        return str(UUID(raw))
    except ValueError:
        raise NotFound("no such conversation", code=ChatError.CONVERSATION_NOT_FOUND) from None


def optional_seq(request: Request, name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise Invalid("must be a non-negative integer", field=name)
    return int(raw)


@bp.get("/")
@openapi.definition(summary="Your conversations (one per booking), most recently active first",
                    tag="chat")
@openapi.response(200, json_response(ConversationPage), "one page of conversations")
@paged
@authenticated()
async def list_conversations(request: Request) -> HTTPResponse:
    conversations, next_cursor = await chat.list_conversations(
        viewer_of(request), cursor=request.args.get("cursor"), limit=parse_limit(request.args.get("limit")))
    return json({"data": conversations, "next_cursor": next_cursor})


@bp.get("/<raw_id>/messages")
@openapi.definition(summary="A page of messages in seq order (?after_seq=, ?before_seq=, ?limit=)",
                    tag="chat")
@openapi.response(200, json_response(MessageList), "the messages")
@openapi.parameter("after_seq", RawSchema({"type": "integer", "minimum": 0}), "query",
                   description="only messages after this seq, oldest first")
@openapi.parameter("before_seq", RawSchema({"type": "integer", "minimum": 1}), "query",
                   description="only messages before this seq")
@openapi.parameter("limit", LIMIT_PARAMETER, "query", description="1 to 100; omitted or empty: 20")
@authenticated()
async def list_messages(request: Request, raw_id: str) -> HTTPResponse:
    cid = conversation_id(raw_id)
    await chat.conversation_for(viewer_of(request), cid)
    after_seq, before_seq = optional_seq(request, "after_seq"), optional_seq(request, "before_seq")
    limit = parse_limit(request.args.get("limit"))
    check_page(after_seq, before_seq)
    messages = await chat.list_messages(cid, after_seq=after_seq, before_seq=before_seq, limit=limit)
    return json({"data": messages})


@bp.post("/<raw_id>/messages")
@openapi.definition(summary="Send a message; a retry with the same client_msg_id answers the first",
                    body=openapi_body(SendBody), tag="chat")
@openapi.response(201, json_response(MessageAnswer), "sent")
@openapi.response(200, json_response(MessageAnswer), "sent before with this client_msg_id")
@authenticated()
async def send_message(request: Request, raw_id: str) -> HTTPResponse:
    cid = conversation_id(raw_id)
    body = parse_body(request, SendBody)
    attachment_id = (str(parse_uuid(body.attachment_id, field="attachment_id"))
                     if body.attachment_id is not None else None)
    message, created = await router_of(request).send(
        cid, sender_id=viewer_of(request).user_id, client_msg_id=body.client_msg_id, body=body.body,
        attachment_id=attachment_id)
    return json({"data": message}, status=201 if created else 200)


@bp.post("/<raw_id>/attachments", stream=True)
@openapi.definition(summary="Upload an image (multipart field 'file': JPEG, PNG or WebP) to send with a "
                            "message as its attachment_id; the conversation's parties only",
                    body=openapi_upload("file", "the image: JPEG, PNG or WebP"), tag="chat")
@openapi.response(201, json_response(AttachmentUploaded), "stored; send its id with a message")
@authenticated()
async def upload_attachment(request: Request, raw_id: str) -> HTTPResponse:
    cid, viewer, settings = conversation_id(raw_id), viewer_of(request), settings_of(request)
    await chat.conversation_for(viewer, cid)  # before reading the body
    data = await read_upload(request, field="file", max_bytes=settings.chat_attachment_max_bytes)
    row = await attachments.add_attachment(cid, viewer=viewer, data=data, settings=settings,
                                           store=store_of(request))
    return json({"id": str(row.id), "status": row.status}, status=201)


@bp.get("/<raw_id>/attachments/<attachment_id>/file")
@openapi.definition(summary="Download a processed chat image, or a WebP thumbnail with ?size= "
                            "(parties and admins); 409 until processed", tag="chat")
@openapi.response(200, IMAGE_FILE, "the EXIF-free image (its own type), or a WebP thumbnail")
@openapi.parameter("size", str, "query", description="a thumbnail width the attachment lists; omitted: the image")
@authenticated()
async def download_attachment(request: Request, raw_id: str, attachment_id: str) -> HTTPResponse:
    try:
        target = UUID(attachment_id)
    except ValueError:
        raise NotFound("no such attachment", code=ChatError.ATTACHMENT_NOT_FOUND) from None
    row, content_type, data = await attachments.read_attachment_file(
        conversation_id(raw_id), target, viewer=viewer_of(request), size=request.args.get("size"),
        store=store_of(request))
    return raw(data, content_type=content_type, headers={
        "Content-Disposition": f'inline; filename="{row.id}{EXTENSIONS.get(content_type, "")}"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


@bp.post("/<raw_id>/read")
@openapi.definition(summary="Move your read cursor forward to seq", body=openapi_body(ReadBody), tag="chat")
@openapi.response(200, json_response(ReadAnswer), "your read cursor (it never moves back)")
@authenticated()
async def mark_read(request: Request, raw_id: str) -> HTTPResponse:
    cid = conversation_id(raw_id)
    body = parse_body(request, ReadBody)
    seq = await router_of(request).mark_read(cid, user_id=viewer_of(request).user_id, seq=body.seq)
    return json({"data": {"conversation_id": cid, "read_seq": seq}})
