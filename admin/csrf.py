"""CSRF protection for every state-changing request to the admin, bound to the staff session.

The token lives in the signed session (so a cookie planted from a sibling domain cannot supply
one), is put on `request.state.csrf_token` where starlette-admin's templates render it as the
hidden `csrftoken` field, and is mirrored into the readable `starlette_admin_csrftoken` cookie
that starlette-admin's scripts copy into the `X-CSRFToken` header of their fetch/XHR calls.
A POST (or any unsafe method) must carry it in that header, in `X-CSRF-Token`, or in the form
field, or it is refused with 403 before it reaches a handler; a form body is read (up to
`max_body_bytes`, 413 beyond) only when no header carries the token. Needs SessionMiddleware
outside it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin.errors import problem_response

SESSION_KEY = "csrf_token"
COOKIE_NAME = "starlette_admin_csrftoken"  # read by starlette-admin's list and action scripts
FIELD_NAME = "csrftoken"  # rendered by starlette-admin's csrf_input() in every form
HEADER_NAMES = ("x-csrftoken", "x-csrf-token")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def session_csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's token, made on first use."""
    token = session.get(SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = rotate_csrf_token(session)
    return token


def rotate_csrf_token(session: MutableMapping[str, Any]) -> str:
    """Issue a fresh token (at sign-in, so a token seen before it is worthless after)."""
    token = secrets.token_urlsafe(32)
    session[SESSION_KEY] = token
    return token


class SessionCSRFMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, cookie_path: str = "/") -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.cookie_path = cookie_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "session" not in scope:
            raise RuntimeError("SessionCSRFMiddleware needs SessionMiddleware outside it")
        session = scope["session"]
        expected = session_csrf_token(session)
        scope.setdefault("state", {})["csrf_token"] = expected
        if scope["method"] not in SAFE_METHODS:
            headers = Headers(scope=scope)
            submitted = next((headers[h] for h in HEADER_NAMES if h in headers), None)
            if submitted is None and headers.get("content-type", "").lower().startswith(FORM_TYPES):
                body = await self._read_body(receive)
                if body is None:
                    await self._refuse(scope, receive, send, status=413, code="payload_too_large",
                                       title="Request body too large",
                                       detail=f"the form is larger than {self.max_body_bytes} bytes")
                    return
                submitted = await _form_token(scope, body)
                receive = _replay(body, then=receive)
            if not submitted or not hmac.compare_digest(submitted.encode(), expected.encode()):
                await self._refuse(
                    scope, receive, send, status=403, code="csrf_failed", title="Form expired or forged",
                    detail="this request did not carry the dashboard's security token; "
                           "reload the page and try again",
                )
                return
        sent_cookie = cookie_parser(Headers(scope=scope).get("cookie", "")).get(COOKIE_NAME)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Read the session again: signing in rotates the token, signing out drops it.
                current = session.get(SESSION_KEY)
                if current and sent_cookie != current:
                    cookie = (f"{COOKIE_NAME}={current}; Path={self.cookie_path}; SameSite=Strict"
                              + ("; Secure" if scope.get("scheme") == "https" else ""))
                    MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, **problem: Any) -> None:
        response = problem_response(Request(scope), **problem)
        await response(scope, receive, send)


async def _form_token(scope: Scope, body: bytes) -> str | None:
    request = Request(scope, receive=_replay(body, then=_never))
    try:
        async with request.form() as form:
            value = form.get(FIELD_NAME)
    except (HTTPException, MultiPartException):
        return None  # a malformed body carries no token, and is refused before any handler
    return value if isinstance(value, str) else None


def _replay(body: bytes, *, then: Receive) -> Receive:
    """Yield an already-read body once, then hand over to `then` (the client's disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _never() -> Message:
    return {"type": "http.disconnect"}
