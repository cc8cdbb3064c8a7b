"""POST /api/v1/broadcasting/auth: signs a socket's subscription to a private or presence
channel for the signed-in user, as Laravel's broadcasting auth route does for pusher-js.

Accepts form fields (what pusher-js sends) or JSON: socket_id, channel_name, optionally app_id
(default: the first configured app). Who may join is decided by core.channels alone. The worker
holding the socket is told which token signed what, so that revoking the token closes the
socket once it has subscribed with that signature (edge/realtime/hub.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sanic_ext import openapi

from core.channels import ChannelKind, Viewer, authorize_channel, booking_id_of, channel_kind
from core.errors import Invalid, NotFound, Unavailable
from core.realtime import RealtimeApp
from edge.auth import authenticated, current_session
from edge.realtime import errors as ws_errors
from edge.realtime.signing import channel_auth
from edge.responses import ChannelAuth
from edge.responses import json_response as documented_json
from edge.validation import openapi_content
from storage.chat import load_booking_parties

bp = Blueprint("realtime_auth", url_prefix="/api/v1/broadcasting")

_SOCKET_ID = re.compile(r"^\d{1,20}\.\d{1,20}$")
AUTH_FIELDS = {"type": "object", "required": ["socket_id", "channel_name"], "properties": {
    "socket_id": {"type": "string", "pattern": "^[0-9]{1,20}\\.[0-9]{1,20}$",
                  "description": "the socket's id, from pusher:connection_established"},
    "channel_name": {"type": "string", "description": "a private-… or presence-… channel"},
    "app_id": {"type": "string", "description": "the realtime app; omitted or empty: the first configured"},
}}


def _fields(request: Request) -> dict[str, Any]:
    if (request.content_type or "").startswith("application/json"):
        payload = request.json
        if not isinstance(payload, dict):
            raise Invalid("the body must be a JSON object", field="body")
        return payload
    return {key: request.form.get(key) for key in ("socket_id", "channel_name", "app_id")}


def _app(request: Request, app_id: Any) -> RealtimeApp:
    apps: tuple[RealtimeApp, ...] = request.app.ctx.realtime_apps
    if app_id in (None, ""):
        return apps[0]
    for app in apps:
        if app.id == app_id:
            return app
    raise NotFound("no such realtime app", code="unknown_app")


@bp.post("/auth")
@openapi.definition(summary="Sign a socket's subscription to a private or presence channel "
                            "(form fields or JSON: socket_id, channel_name, app_id)",
                    body=openapi_content(AUTH_FIELDS, "application/x-www-form-urlencoded", "application/json"),
                    tag="realtime")
@openapi.response(200, documented_json(ChannelAuth), "the signature, as pusher-js expects it")
@authenticated()
async def authorize(request: Request) -> HTTPResponse:
    fields = _fields(request)
    socket_id, channel = fields.get("socket_id"), fields.get("channel_name")
    if not isinstance(socket_id, str) or not _SOCKET_ID.match(socket_id):
        raise Invalid("must be a socket id like 1234.5678", field="socket_id")
    if not isinstance(channel, str):
        raise Invalid("is required", field="channel_name")
    app = _app(request, fields.get("app_id"))
    session = current_session(request)
    user = session.user
    viewer = Viewer(str(user.id), str(user.role))
    booking_id = booking_id_of(channel)
    booking = await load_booking_parties(booking_id) if booking_id else None
    authorize_channel(channel, viewer=viewer, booking=booking)
    if channel_kind(channel) is ChannelKind.PRESENCE:
        channel_data = json.dumps({"user_id": viewer.user_id,
                                   "user_info": {"name": user.name, "role": viewer.role}})
        signed = {"auth": channel_auth(app, socket_id, channel, channel_data), "channel_data": channel_data}
    else:
        signed = {"auth": channel_auth(app, socket_id, channel)}
    try:  # the socket's worker learns whose token signed this, to close it if the token is revoked
        await request.app.ctx.realtime.hub.grant(socket_id, session.token.id, channel, signed["auth"])
    except ws_errors.Unavailable:
        raise Unavailable(dependency="nats") from None
    return json_response(signed)
