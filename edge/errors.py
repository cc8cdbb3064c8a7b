"""The one place where errors become RFC 9457 problem details.

Domain errors (core.errors) carry their status and code; Sanic's own errors (bad JSON, unknown
route, oversized body) are mapped by status; a dependency that cannot be reached (PostgreSQL
restarting, a shard actor's process gone) is a 503 with Retry-After, as `Unavailable`; anything
else is a logged 500 with the request id.
"""

from __future__ import annotations

import logging

from sanic import Request
from sanic.exceptions import MethodNotAllowed, NotFound, SanicException
from sanic.response import HTTPResponse, json

from actors.runtime import unreachable_dependency
from core.errors import (
    PROBLEM_CONTENT_TYPE,
    SpotlessError,
    Unauthenticated,
    problem_body,
    problem_of,
)
from edge.observability import request_id_var

log = logging.getLogger("spotless.edge")

_SANIC_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    408: ("request_timeout", "Request timeout"),
    411: ("length_required", "Length required"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    416: ("range_not_satisfiable", "Range not satisfiable"),
    417: ("expectation_failed", "Expectation failed"),
    426: ("upgrade_required", "Upgrade required"),
    431: ("headers_too_large", "Request headers too large"),
    503: ("unavailable", "Service unavailable"),
}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """The methods the requested path answers, for a 405's Allow header (RFC 9110). Sanic's
    router names them for static paths only, so dynamic ones are asked method by method."""
    allowed = []
    for method in _METHODS:
        try:
            request.app.router.get(request.path, method, request.headers.get("host"))
        except (MethodNotAllowed, NotFound):
            continue
        allowed.append(method)
    return ", ".join(allowed)


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    request: Request | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> HTTPResponse:
    extra = {"instance": request.path, "request_id": str(request.id)} if request is not None else {}
    return json(problem_body(status, code, title, detail, errors=errors, **extra), status=status,
                headers=headers, content_type=PROBLEM_CONTENT_TYPE)


async def handle_exception(request: Request, exc: Exception) -> HTTPResponse:
    request_id_var.set(str(request.id))  # routing errors arrive before the request middleware
    unavailable = unreachable_dependency(exc)
    if unavailable is not None:
        log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc,
                    extra={"request_id": str(request.id), "path": request.path})
        exc = unavailable
    if isinstance(exc, SpotlessError):
        body, headers = problem_of(exc)
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = 'Bearer realm="spotless"'
        body.update(instance=request.path, request_id=str(request.id))
        return json(body, status=exc.status, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, SanicException) and (400 <= exc.status_code < 500 or exc.status_code == 503):
        code, title = _SANIC_CODES.get(exc.status_code, ("bad_request", "Bad request"))
        detail = str(exc) or title
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405 and not any(k.lower() == "allow" for k in headers):
            headers["Allow"] = _allowed_methods(request)
        return problem(exc.status_code, code, title, detail, request=request, headers=headers)
    log.exception("unhandled error", extra={"request_id": str(request.id), "path": request.path})
    return problem(500, "internal_error", "Internal server error",
                   "something went wrong on our side; quote the request id when reporting it",
                   request=request)
