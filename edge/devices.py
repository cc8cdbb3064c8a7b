"""/api/v1/me/devices and /api/v1/me/notification-preferences: where and what we may push."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from core.errors import Invalid
from core.events import PushCategory
from edge.auth import authenticated, current_session
from edge.responses import Device, NotificationPreferences, json_response, no_content
from edge.validation import Body, openapi_body, openapi_content, parse_body
from storage import devices

bp = Blueprint("devices", url_prefix="/api/v1/me")


class DeviceBody(Body):
    platform: str = Field(max_length=16, description="ios, android or web")
    token: str = Field(max_length=devices.MAX_TOKEN_LENGTH,
                       description="the Firebase installation ID, or a legacy FCM registration token")
    kind: str = Field(default="token", max_length=8, description="fid or token (the default)")


@bp.post("/devices")
@openapi.definition(summary="Register this app install for push notifications",
                    body=openapi_body(DeviceBody), tag="notifications")
@openapi.response(201, json_response(Device), "registered")
@authenticated()
async def add_device(request: Request) -> HTTPResponse:
    body = parse_body(request, DeviceBody)
    device = await devices.register_device(actor=current_session(request).user, platform=body.platform,
                                           token=body.token, kind=body.kind)
    return json({"platform": device.platform, "kind": device.kind, "token": device.token,
                 "created_at": device.created_at.isoformat()}, status=201)


@bp.delete("/devices/<token:str>")
@openapi.definition(summary="Stop push notifications to this app install", tag="notifications")
@no_content("removed")
@authenticated()
async def delete_device(request: Request, token: str) -> HTTPResponse:
    await devices.remove_device(actor=current_session(request).user, token=token)
    return empty()


@bp.get("/notification-preferences")
@openapi.definition(summary="Which push categories you receive", tag="notifications")
@openapi.response(200, json_response(NotificationPreferences), "every category: on or off")
@authenticated()
async def get_preferences(request: Request) -> HTTPResponse:
    return json(await devices.preferences(actor=current_session(request).user))


@bp.put("/notification-preferences")
@openapi.definition(summary="Switch push categories on or off ({category: bool})", tag="notifications",
                    body=openapi_content({"type": "object", "additionalProperties": False, "properties": {
                        category: {"type": "boolean"} for category in PushCategory}}))
@openapi.response(200, json_response(NotificationPreferences), "every category, after the change")
@authenticated()
async def put_preferences(request: Request) -> HTTPResponse:
    payload: Any = request.json
    if not isinstance(payload, dict):
        raise Invalid("the body must be a JSON object of category: true/false", field="body")
    return json(await devices.update_preferences(actor=current_session(request).user, changes=payload))
