"""/api/v1/admin: staff endpoints over the REST API (the admin dashboard offers the same actions)."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from core.accounts import Role
from core.errors import Invalid
from edge.auth import authenticated, current_session
from edge.responses import UserOnly, json_response
from edge.validation import Body, openapi_body, parse_body
from storage import accounts

bp = Blueprint("staff", url_prefix="/api/v1/admin")


class SuspendBody(Body):
    reason: str = Field(default="", max_length=500)


def parse_uuid(raw: str, *, field: str = "id") -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise Invalid("must be a UUID", field=field) from None


@bp.post("/users/<user_id:str>/suspend")
@openapi.definition(summary="Suspend an account; its tokens stop working at once",
                    body=openapi_body(SuspendBody), tag="admin")
@openapi.response(200, json_response(UserOnly), "the suspended user")
@authenticated(Role.ADMIN)
async def suspend(request: Request, user_id: str) -> HTTPResponse:
    body = parse_body(request, SuspendBody) if request.body else SuspendBody()
    user = await accounts.set_suspended(user_id=parse_uuid(user_id), suspended=True,
                                        actor=current_session(request).user, reason=body.reason)
    return json({"user": user.public()})


@bp.post("/users/<user_id:str>/reinstate")
@openapi.definition(summary="Reinstate a suspended account", tag="admin")
@openapi.response(200, json_response(UserOnly), "the reinstated user")
@authenticated(Role.ADMIN)
async def reinstate(request: Request, user_id: str) -> HTTPResponse:
    user = await accounts.set_suspended(user_id=parse_uuid(user_id), suspended=False,
                                        actor=current_session(request).user)
    return json({"user": user.public()})
