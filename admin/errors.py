"""The one place where the admin turns errors into responses.

Domain errors (core.errors) raised by admin actions become RFC 9457 problem details for API
calls (the dashboard's fetch/XHR endpoints under `/_api/`) and a readable page for everything
else; a dependency that is away (the database restarting, a shard's process gone) a 503 with
Retry-After; an unexpected exception becomes a logged 500 with an error id. A domain `Invalid` raised
while saving a form becomes that form's field errors instead, so staff see the message next to
the field. Nothing else in the admin builds an error response.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any
from uuid import uuid4

from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette_admin.exceptions import FormValidationError

from actors.runtime import unreachable_dependency
from core.errors import PROBLEM_CONTENT_TYPE, Invalid, SpotlessError, problem_body, problem_of

log = logging.getLogger("spotless.admin")

_pages = Environment(loader=PackageLoader("admin", "templates"), autoescape=True)


def wants_json(request: Request) -> bool:
    """API calls get problem JSON: the `/_api/` endpoints and clients that ask for JSON."""
    if "/_api/" in request.url.path:
        return True
    accept = request.headers.get("accept", "")
    return "json" in accept and "text/html" not in accept


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """A problem document for API calls, the same message as a page for a browser."""
    if wants_json(request):
        # starlette-admin's action scripts show `msg` to the user.
        body = problem_body(status, code, title, detail, errors=errors, instance=request.url.path,
                            msg=detail, **(extra or {}))
        return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)
    page = _pages.get_template("spotless/problem.html").render(
        status=status, title=title, detail=detail, errors=errors or [], extra=extra or {},
        home=request.scope.get("root_path") or "/",
    )
    return HTMLResponse(page, status_code=status, headers=headers)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    """Translate a core.errors.SpotlessError (registered once, for the base class)."""
    assert isinstance(exc, SpotlessError)
    body, headers = problem_of(exc)
    errors = body.get("errors")
    return problem_response(request, status=exc.status, code=exc.code, title=exc.title,
                            detail=exc.detail, errors=errors if isinstance(errors, list) else None,
                            headers=headers)


async def handle_unexpected_error(request: Request, exc: Exception) -> Response:
    unavailable = unreachable_dependency(exc)  # the database or a shard away: 503, try again
    if unavailable is not None:
        log.warning("dependency unavailable: %s: %s", type(exc).__name__, exc, extra={"path": request.url.path})
        return await handle_domain_error(request, unavailable)
    error_id = uuid4().hex
    log.error("unhandled admin error", exc_info=exc,
              extra={"error_id": error_id, "path": request.url.path})
    return problem_response(
        request, status=500, code="internal_error", title="Internal server error",
        detail=f"something went wrong on our side; quote error id {error_id} when reporting it",
        extra={"error_id": error_id},
    )


def install_error_handlers(app: Starlette) -> None:
    """Register the translation on the admin's own Starlette app (before its first request)."""
    app.add_exception_handler(SpotlessError, handle_domain_error)
    app.add_exception_handler(Exception, handle_unexpected_error)


def as_form_errors(exc: Invalid, form_fields: Collection[str]) -> FormValidationError | None:
    """The field messages of an Invalid whose fields are all on the form, else None."""
    if not exc.errors or any(e.field not in form_fields for e in exc.errors):
        return None
    return FormValidationError({e.field: e.message for e in exc.errors})
