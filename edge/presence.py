"""/api/v1/cleaner/presence: the cleaner app's heartbeat, which keeps a cleaner online."""

from __future__ import annotations

import logging

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from core.accounts import Role
from core.errors import Unavailable
from core.settings import Settings
from edge.auth import authenticated, current_session
from edge.responses import Heartbeat, json_response
from edge.validation import Body, openapi_body, parse_body


class HeartbeatBody(Body):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)


bp = Blueprint("presence", url_prefix="/api/v1")
log = logging.getLogger("spotless.edge.presence")


@bp.post("/cleaner/presence")
@openapi.definition(summary="Heartbeat: you are online here until the timeout passes", tag="supply",
                    body=openapi_body(HeartbeatBody))
@openapi.response(200, json_response(Heartbeat), "online until timeout_s passes without one")
@authenticated(Role.CLEANER)
async def heartbeat(request: Request) -> HTTPResponse:
    settings: Settings = request.app.ctx.settings
    body = parse_body(request, HeartbeatBody)
    try:
        await request.app.ctx.presence.heartbeat(str(current_session(request).user.id), body.lat, body.lng)
    except Exception as exc:  # Ray raises several types when a shard cannot answer
        log.exception("presence shard call failed")
        raise Unavailable(dependency="presence") from exc
    return json({"online": True, "timeout_s": settings.presence_timeout_s})
