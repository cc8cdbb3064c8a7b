"""The shapes of successful answers, for the OpenAPI document (and so for schemathesis, which
holds every answer to them). Documentation only: handlers build their JSON themselves.

`additionalProperties: false` throughout, so a field added to an answer without being added
here fails the contract test instead of drifting out of the document unseen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict
from sanic_ext.extensions.openapi.builders import OperationStore
from sanic_ext.extensions.openapi.definitions import Response

from edge.validation import inline_schema

Handler = TypeVar("Handler", bound=Callable[..., Any])


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublicUser(Shape):
    id: str
    email: str
    name: str
    phone: str | None
    role: Literal["client", "cleaner", "admin"]
    email_verified: bool
    suspended: bool
    created_at: str


class AccessToken(Shape):
    id: int
    name: str
    abilities: list[str]
    last_used_at: str | None
    expires_at: str | None
    created_at: str
    current: bool


class SignedIn(Shape):
    user: PublicUser
    token: str
    token_id: int


class Me(Shape):
    user: PublicUser
    token: AccessToken


class UserOnly(Shape):
    user: PublicUser


class TokenPage(Shape):
    data: list[AccessToken]
    next_cursor: str | None


class Revoked(Shape):
    revoked: int


class Status(Shape):
    status: str


class Money(Shape):
    amount_minor: int
    currency: str


class Service(Shape):
    id: str
    name: str
    description: str
    price: Money
    min_duration_minutes: int
    requires_photo_evidence: bool


class Catalogue(Shape):
    data: list[Service]
    next_cursor: str | None  # always null: the whole catalogue is one page


class Device(Shape):
    platform: str
    kind: str
    token: str
    created_at: str


class Readiness(Shape):
    status: Literal["ready"]
    checks: dict[str, str]


def json_response(model: type[BaseModel]) -> dict[str, Any]:
    """The `content` of a documented JSON answer shaped like `model`."""
    return {"application/json": inline_schema(model)}


def no_content(description: str) -> Callable[[Handler], Handler]:
    """Document a 204 answer (sanic-ext's own decorator would give it a `*/*` body)."""

    def decorate(handler: Handler) -> Handler:
        OperationStore()[handler].responses[204] = Response(description=description)
        return handler

    return decorate
