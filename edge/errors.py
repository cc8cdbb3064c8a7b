"""The one place where errors become RFC 9457 problem details.

Domain errors (core.errors) carry their status and code; Sanic's own errors (bad JSON, unknown
route, oversized body) are mapped by status; anything else is a logged 500 with the request id.
"""

from __future__ import annotations

import logging
from typing import Any

from sanic import Request
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

from core.errors import Invalid, RateLimited, SpotlessError, Unauthenticated, Unavailable

log = logging.getLogger("spotless.edge")

PROBLEM_TYPE_PREFIX = "urn:spotless:problem:"

_SANIC_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    408: ("request_timeout", "Request timeout"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    416: ("range_not_satisfiable", "Range not satisfiable"),
    417: ("expectation_failed", "Expectation failed"),
    503: ("unavailable", "Service unavailable"),
}


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
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    if request is not None:
        body["instance"] = request.path
        body["request_id"] = str(request.id)
    return json(body, status=status, headers=headers, content_type="application/problem+json")


async def handle_exception(request: Request, exc: Exception) -> HTTPResponse:
    if isinstance(exc, SpotlessError):
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited | Unavailable):
            headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = 'Bearer realm="spotless"'
        errors = (
            [{"field": e.field, "message": e.message} for e in exc.errors]
            if isinstance(exc, Invalid)
            else None
        )
        return problem(exc.status, exc.code, exc.title, exc.detail, request=request,
                       errors=errors, headers=headers)
    if isinstance(exc, SanicException) and 400 <= exc.status_code < 500 or (
        isinstance(exc, SanicException) and exc.status_code == 503
    ):
        code, title = _SANIC_CODES.get(exc.status_code, ("bad_request", "Bad request"))
        detail = str(exc) or title
        headers = dict(getattr(exc, "headers", None) or {})
        return problem(exc.status_code, code, title, detail, request=request, headers=headers)
    log.exception("unhandled error", extra={"request_id": str(request.id), "path": request.path})
    return problem(500, "internal_error", "Internal server error",
                   "something went wrong on our side; quote the request id when reporting it",
                   request=request)
