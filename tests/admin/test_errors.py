"""The admin's one translation of errors: problem JSON for scripts, a readable page for people."""

from __future__ import annotations

import json

import asyncpg
from starlette.requests import Request

from admin.errors import handle_domain_error, handle_unexpected_error
from core.errors import Conflict, Invalid, RateLimited


def request_to(path: str, *, accept: str = "*/*") -> Request:
    return Request({"type": "http", "method": "POST", "path": path, "root_path": "/admin",
                    "query_string": b"", "headers": [(b"accept", accept.encode())]})


async def test_domain_error_in_a_script_call_becomes_a_problem_document():
    # given a conflict raised by a domain action during a dashboard script call
    error = Conflict("the booking was already accepted", code="already_accepted")

    # when the admin translates it
    response = await handle_domain_error(request_to("/admin/_api/user/row-action"), error)

    # then the script gets RFC 9457 problem JSON carrying the domain's code
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    body = json.loads(bytes(response.body))
    assert body["type"] == "urn:spotless:problem:already_accepted"
    assert body["code"] == "already_accepted"
    assert body["detail"] == "the booking was already accepted"
    assert body["instance"] == "/admin/_api/user/row-action"


async def test_domain_error_on_a_page_becomes_a_readable_page():
    # given an invalid value reported while a browser loads a page
    error = Invalid("must be a valid e-mail address", field="email")

    # when the admin translates it
    response = await handle_domain_error(request_to("/admin/user/list", accept="text/html"), error)

    # then the person sees the message and the field it is about, on an HTML page
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    page = bytes(response.body).decode()
    assert "must be a valid e-mail address" in page
    assert "<strong>email</strong>" in page
    assert 'href="/admin"' in page


async def test_rate_limit_says_when_to_retry():
    # given a rate limit hit during a script call
    error = RateLimited("too many attempts; try again in 30 s", retry_after_s=30)

    # when the admin translates it
    response = await handle_domain_error(request_to("/admin/_api/user/action"), error)

    # then the response says when to come back
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"


async def test_unexpected_error_is_a_500_with_an_id_to_quote(caplog):
    # given a bug surfacing as a plain exception
    # when the admin translates it
    response = await handle_unexpected_error(request_to("/admin/_api/user/action"),
                                             KeyError("oops"))

    # then the client gets a 500 problem with an error id, and the log has the same id
    body = json.loads(bytes(response.body))
    assert response.status_code == 500
    assert body["code"] == "internal_error"
    assert body["error_id"] in body["detail"]
    assert any(getattr(r, "error_id", None) == body["error_id"] for r in caplog.records)


async def test_a_database_that_went_away_is_a_503_to_retry_not_a_500():
    # given the connection to PostgreSQL dropped under an admin page (a restart)
    error = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    # when the admin translates it
    response = await handle_unexpected_error(request_to("/admin/_api/booking/list"), error)

    # then staff's script is told to try again shortly, with no error id to report
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    body = json.loads(bytes(response.body))
    assert body["code"] == "unavailable" and "error_id" not in body


async def test_a_plain_bug_is_still_a_500_with_an_error_id():
    response = await handle_unexpected_error(request_to("/admin/_api/booking/list"), ValueError("a bug"))
    assert response.status_code == 500
    assert json.loads(bytes(response.body))["error_id"]
