"""What the served OpenAPI document says about responses that every endpoint shares, and what
the document says of itself.

sanic-ext builds the document from each handler's decorators; this module adds, once for every
operation, the RFC 9457 problem document as the schema of its 4xx answers, so a client generator
(or schemathesis) can hold every error to that shape. It never changes a handler.

sanic-ext labels every document OpenAPI 3.0.3, but the schemas in ours are JSON Schema 2020-12 as
pydantic writes them (`{"type": "null"}` in an anyOf for a nullable field, `const`), which only
OpenAPI 3.1 allows: validators and generators that believe the label refuse the document (Redocly
found 198 errors in it). So the served document says 3.1.0, names its server as "/" (the host
that serves it, behind any proxy) instead of sanic-ext's empty list, and describes its tags
(`finish_document`).
"""

from __future__ import annotations

import json
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic_ext.extensions.openapi.builders import OperationStore
from sanic_ext.extensions.openapi.definitions import Response

from core.errors import PROBLEM_CONTENT_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details; branch on `code`, never on the text.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def _documents_success(responses: dict[Any, Any]) -> bool:
    return any(str(status).startswith(("1", "2", "3")) or status == "default" for status in responses)


def document_shared_responses(app: Sanic) -> None:
    """After sanic-ext has collected the operations, give each a 4XX problem response (and a
    plain `default` success when the handler documents none, as sanic-ext would)."""

    @app.after_server_start
    async def describe_problems(app: Sanic) -> None:
        for operation in list(OperationStore().values()):
            if "4XX" not in operation.responses:
                had_success = _documents_success(operation.responses)
                operation.response("4XX", {PROBLEM_CONTENT_TYPE: PROBLEM_SCHEMA},
                                   "a problem: the request was refused, and why")
                if not had_success:
                    operation.responses["default"] = Response(description="success")


OPENAPI_VERSION = "3.1.0"
TAGS = {
    "operations": "health, readiness and metrics",
    "accounts": "registration, sign-in (password and Google, Apple, Facebook), tokens, the profile",
    "supply": "a cleaner's profile, services, verification and availability",
    "admin": "staff actions over the API (verification decisions)",
    "notifications": "devices for push and notification preferences",
    "search": "finding available cleaners at a point",
    "chat": "conversations, messages, attachments and read cursors",
    "bookings": "the booking lifecycle, evidence photos and invoices",
    "payments": "cards, Stripe Connect onboarding and Stripe's webhooks",
    "content": "the public service catalogue and pages",
    "realtime": "Pusher's HTTP API (events, channel queries, terminating connections) and channel auth",
    "reviews": "reviews of finished bookings",
    "realtime_socket": "the Pusher protocol 7 WebSocket",
}


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """The document as served: labelled OpenAPI 3.1.0, a server, every tag described."""
    document = {**document, "openapi": OPENAPI_VERSION}
    if not document.get("servers"):
        document["servers"] = [{"url": "/", "description": "the host serving this document"}]
    if document.get("info", {}).get("contact") == {}:
        document["info"] = {k: v for k, v in document["info"].items() if k != "contact"}
    document["tags"] = [{**tag, "description": tag.get("description") or TAGS.get(tag["name"], tag["name"])}
                        for tag in document.get("tags", [])]
    return document


def serve_finished_document(app: Sanic) -> None:
    """Answer the document's URL with `finish_document` of what sanic-ext built."""
    path = app.config.OAS_URL_PREFIX.rstrip("/") + "/" + app.config.OAS_URI_TO_JSON.lstrip("/")

    @app.on_response
    async def finished(request: Request, response: HTTPResponse) -> None:
        if request.path == path and response.status == 200 and response.body:
            # in place, so the other response middleware's headers stay, whatever their order
            response.body = json.dumps(finish_document(json.loads(response.body))).encode()
            response.headers.pop("content-length", None)
