"""The one exception hierarchy. Domain code raises these; the edge and the admin translate them.

Subclasses set class attributes only. `code` is a short stable string that clients branch on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class SpotlessError(Exception):
    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str | None = None, *, code: str | None = None,
                 members: dict[str, object] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.members = members or {}  # more members of the problem document, for clients to read


class Invalid(SpotlessError):
    status = 422
    code = "invalid"
    title = "The request is not valid"

    def __init__(
        self,
        detail: str | None = None,
        *,
        field: str | None = None,
        errors: list[FieldError] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(detail, code=code)
        self.errors = list(errors or [])
        if field is not None:
            self.errors.append(FieldError(field, detail or self.title))


class TooLarge(Invalid):
    """A part of the request over its size limit, where the protocol asks for 413 (Pusher's HTTP
    API for an event's data); the problem names the field as a 422 would."""

    status = 413
    code = "payload_too_large"
    title = "Too large"


class Unauthenticated(SpotlessError):
    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(SpotlessError):
    status = 403
    code = "forbidden"
    title = "Not allowed"


class NotFound(SpotlessError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(SpotlessError):
    status = 409
    code = "conflict"
    title = "Conflict"


class RateLimited(SpotlessError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = max(1, int(retry_after_s))


class Unavailable(SpotlessError):
    status = 503
    code = "unavailable"
    title = "A dependency is unavailable"

    def __init__(self, detail: str | None = None, *, dependency: str, retry_after_s: int = 5) -> None:
        super().__init__(detail or f"{dependency} is unavailable")
        self.dependency = dependency
        self.retry_after_s = retry_after_s


# --- RFC 9457 problem details: the one body shape every error response carries ---

PROBLEM_TYPE_PREFIX = "urn:spotless:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(
    status: int, code: str, title: str, detail: str, *,
    errors: list[dict[str, str]] | None = None, **extra: object,
) -> dict[str, object]:
    """A problem document: `type`, `title`, `status`, `detail`, the stable `code`, field
    `errors` when there are any, then whatever the caller adds (instance, request id…)."""
    body: dict[str, object] = {"type": PROBLEM_TYPE_PREFIX + code, "title": title, "status": status,
                               "detail": detail, "code": code}
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def problem_of(exc: SpotlessError) -> tuple[dict[str, object], dict[str, str]]:
    """The problem document and the headers (Retry-After) of a domain error."""
    errors = [{"field": e.field, "message": e.message} for e in exc.errors] if isinstance(exc, Invalid) else None
    headers = ({"Retry-After": str(exc.retry_after_s)}
               if isinstance(exc, RateLimited | Unavailable) else {})
    return problem_body(exc.status, exc.code, exc.title, exc.detail, errors=errors, **exc.members), headers
