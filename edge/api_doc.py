"""What the served OpenAPI document says about responses that every endpoint shares.

sanic-ext builds the document from each handler's decorators; this module adds, once for every
operation, the RFC 9457 problem document as the schema of its 4xx answers, so a client generator
(or schemathesis) can hold every error to that shape. It never changes a handler.
"""

from __future__ import annotations

from typing import Any

from sanic import Sanic
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
