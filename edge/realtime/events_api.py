"""Pusher's HTTP events API for server-side publishing: POST /apps/{app_id}/events and
/batch_events, signed as Pusher's server libraries sign (auth_key, auth_timestamp,
auth_version=1.0, body_md5, auth_signature). Events are published on NATS `rt.<channel>`.
A trigger's `info` (subscription_count, user_count) answers with its channels' counts, as the
channel query API (edge/realtime/channels_api.py) gathers them. And POST
/apps/{app_id}/users/{user_id}/terminate_connections closes a user's sockets on every worker."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sanic_ext import openapi

from core.channel_queries import InfoAttribute, requested_info
from core.channels import channel_kind
from core.errors import Invalid, NotFound, TooLarge, Unauthenticated, Unavailable
from core.realtime import RealtimeApp
from core.settings import Settings
from edge.realtime import errors as ws_errors
from edge.realtime.signing import request_signature_valid
from edge.responses import PusherBatch, PusherTerminated, PusherTriggered
from edge.responses import json_response as documented_json
from edge.validation import openapi_content

bp = Blueprint("realtime_events_api", url_prefix="/apps")

MAX_CHANNELS_PER_EVENT = 100
MAX_BATCH = 10
MAX_EVENT_NAME = 200
MAX_USER_ID = 200
_EVENT_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": MAX_EVENT_NAME},
    "data": {"type": "string", "description": "the payload; JSON-encode objects"},
    "channel": {"type": "string"},
    "socket_id": {"type": "string", "description": "a socket not to send the event to"},
    "info": {"type": "string", "description": "comma-separated attributes to answer for each channel: "
             "subscription_count, user_count (presence channels)"},
}
EVENT_BODY = {"type": "object", "required": ["name", "data"], "properties": {
    **_EVENT_FIELDS,
    "channels": {"type": "array", "minItems": 1, "maxItems": MAX_CHANNELS_PER_EVENT,
                                  "items": {"type": "string"}, "description": "or a single channel"}}}
BATCH_BODY = {"type": "object", "required": ["batch"], "properties": {"batch": {
    "type": "array", "minItems": 1, "maxItems": MAX_BATCH,
    "items": {"type": "object", "required": ["name", "data", "channel"], "properties": _EVENT_FIELDS}}}}


def signed_app(request: Request, app_id: str) -> RealtimeApp:
    """The app the request is for, once its signature, key, timestamp and body hash check out."""
    apps: tuple[RealtimeApp, ...] = request.app.ctx.realtime_apps
    app = next((a for a in apps if a.id == app_id), None)
    if app is None:
        raise NotFound("no such realtime app", code="unknown_app")
    # Blank values too: a library signs `info=` as sent.
    params = {key: value for key, value in request.get_query_args(keep_blank_values=True)}
    settings: Settings = request.app.ctx.settings
    if "auth_key" not in params or params.get("auth_version") != "1.0":
        raise Unauthenticated("auth_key and auth_version=1.0 are required", code="bad_signature")
    if params["auth_key"] != app.key:
        raise Unauthenticated(f"auth_key is not the key of app {app.id}", code="bad_signature")
    timestamp = params.get("auth_timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > settings.realtime_auth_timestamp_tolerance_s:
        raise Unauthenticated("auth_timestamp is missing or too far from the server's clock",
                              code="bad_timestamp")
    if request.body and not hmac.compare_digest(params.get("body_md5", ""),
                                                hashlib.md5(request.body).hexdigest()):
        raise Unauthenticated("body_md5 does not match the body", code="bad_signature")
    if not request_signature_valid(app.secret, request.method, request.path, params):
        raise Unauthenticated("invalid auth_signature", code="bad_signature")
    return app


def _event(payload: Any, app: RealtimeApp, *, batch: bool) -> tuple[list[str], str, str, str | None]:
    if not isinstance(payload, dict):
        raise Invalid("each event must be a JSON object", field="body")
    name, data, socket_id = payload.get("name"), payload.get("data"), payload.get("socket_id")
    channels = [payload.get("channel")] if batch else payload.get("channels") or (
        [payload["channel"]] if "channel" in payload else None)
    if not isinstance(name, str) or not name or len(name) > MAX_EVENT_NAME:
        raise Invalid(f"must be a string of 1-{MAX_EVENT_NAME} characters", field="name")
    if not isinstance(data, str):
        raise Invalid("must be a string (JSON-encode objects)", field="data")
    if len(data.encode()) > app.max_message_bytes:
        raise TooLarge(f"must be at most {app.max_message_bytes} bytes", field="data")  # Pusher's 413
    if not isinstance(channels, list) or not 1 <= len(channels) <= MAX_CHANNELS_PER_EVENT:
        raise Invalid(f"must list 1-{MAX_CHANNELS_PER_EVENT} channels", field="channels")
    for channel in channels:
        channel_kind(channel)  # raises Invalid for a bad name
    if socket_id is not None and not isinstance(socket_id, str):
        raise Invalid("must be a string", field="socket_id")
    return channels, name, data, socket_id


async def _publish(request: Request, app: RealtimeApp, events: list[tuple[list[str], str, str, str | None]]) -> None:
    hub = request.app.ctx.realtime.hub
    try:
        for channels, name, data, socket_id in events:
            for channel in channels:
                await hub.publish(app_id=app.id, channel=channel, event=name, data=data,
                                  exclude_socket_id=socket_id)
    except ws_errors.Unavailable:
        raise Unavailable(dependency="nats") from None


def _body(request: Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except ValueError:
        raise Invalid("the body must be JSON", field="body") from None


def signed_query(handler: Any) -> Any:
    """Document the query parameters that sign a request the way Pusher's server libraries do."""
    for name, description in reversed((
            ("auth_key", "the app's key"), ("auth_timestamp", "Unix seconds, close to the server's clock"),
            ("auth_version", "1.0"), ("body_md5", "hex MD5 of the body; required with a body"),
            ("auth_signature", "hex HMAC-SHA256 of the request, as Pusher's server libraries sign it"))):
        handler = openapi.parameter(name, str, "query", required=name != "body_md5",
                                    description=description)(handler)
    return handler


@bp.post("/<app_id>/events")
@openapi.definition(summary="Pusher HTTP events API: trigger an event (signed)", tag="realtime",
                    body=openapi_content(EVENT_BODY))
@signed_query
@openapi.response(200, documented_json(PusherTriggered),
                  "published: an empty object, or the channels' counts when `info` asked for them")
async def trigger(request: Request, app_id: str) -> HTTPResponse:
    app = signed_app(request, app_id)
    body = _body(request)
    event = _event(body, app, batch=False)
    info = _info(body)
    # Counted before publishing (the sockets that will hear it): should counting fail, nothing
    # was published, and the server may simply retry.
    channels = await request.app.ctx.realtime.census.describe(app.id, info, channels=event[0]) if info else None
    await _publish(request, app, [event])
    return json_response({} if channels is None else {"channels": channels})


def _info(payload: dict[str, Any]) -> frozenset[InfoAttribute]:
    info = payload.get("info")
    if info is not None and not isinstance(info, str):
        raise Invalid("must be a comma-separated string", field="info")
    return requested_info(info)


@bp.post("/<app_id>/batch_events")
@openapi.definition(summary="Pusher HTTP events API: trigger up to 10 events (signed)",
                    tag="realtime", body=openapi_content(BATCH_BODY))
@signed_query
@openapi.response(200, documented_json(PusherBatch),
                  "published: per event, an empty object or its channel's counts when its `info` asked")
async def trigger_batch(request: Request, app_id: str) -> HTTPResponse:
    app = signed_app(request, app_id)
    body = _body(request)
    batch = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(batch, list) or not 1 <= len(batch) <= MAX_BATCH:
        raise Invalid(f"batch must list 1-{MAX_BATCH} events", field="batch")
    events = [_event(item, app, batch=True) for item in batch]
    infos = [_info(item) for item in batch]
    # One count for every channel any event asked about, before publishing, as `trigger` does.
    asked = [channels[0] for (channels, *_), info in zip(events, infos, strict=True) if info]
    counted = (await request.app.ctx.realtime.census.describe(app.id, frozenset().union(*infos), channels=asked)
               if asked else {})
    await _publish(request, app, events)
    return json_response({"batch": [
        {attribute: value for attribute, value in counted[channels[0]].items() if attribute in info} if info else {}
        for (channels, *_), info in zip(events, infos, strict=True)]})


@bp.post("/<app_id>/users/<user_id>/terminate_connections")
@openapi.definition(summary="Pusher HTTP API: close a user's connections (signed)", tag="realtime",
                    description="Closes, on every edge worker, the app's sockets that are on a presence channel as "
                                "this user (the `user_id` of their channel_data, as Reverb decides): each gets "
                                "`pusher:error` 4009 and is closed with 4009, which Pusher's clients do not retry.",
                    body=openapi_content({"type": "object", "description": "empty, as the SDKs send it"}))
@signed_query
@openapi.response(200, documented_json(PusherTerminated), "asked of every worker: an empty object")
async def terminate_connections(request: Request, app_id: str, user_id: str) -> HTTPResponse:
    app = signed_app(request, app_id)
    if not user_id or len(user_id) > MAX_USER_ID:
        raise Invalid(f"must be 1-{MAX_USER_ID} characters", field="user_id")
    if not isinstance(_body(request), dict | None):
        raise Invalid("the body must be a JSON object (or empty)", field="body")
    try:
        await request.app.ctx.realtime.hub.terminate(app.id, user_id)
    except ws_errors.Unavailable:
        raise Unavailable(dependency="nats") from None
    return json_response({})
