"""Malformed, oversized and hostile requests get a 4xx problem response, never a 500."""

import json

import pytest

from tests.conftest import STRONG_PASSWORD, unique_email

ENDPOINTS = ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/password/forgot",
             "/api/v1/auth/password/reset", "/api/v1/auth/email/verify", "/api/v1/auth/oauth/google"]


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("urn:")
    return body


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2, 3]", b'"a string"', b"null", b"\xff\xfe\x00",
                                 b'{"email": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_malformed_bodies_are_400_or_422(api, path, raw):
    response = api.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), (path, raw[:20], response.status_code, response.text)
    assert_problem(response, response.status_code)


@pytest.mark.parametrize("body, field", [
    ({"email": 42, "password": STRONG_PASSWORD, "name": "N", "role": "client"}, "email"),
    ({"email": "a@example.com", "password": ["x"], "name": "N", "role": "client"}, "password"),
    ({"email": "a@example.com", "password": STRONG_PASSWORD, "name": None, "role": "client"}, "name"),
    ({"email": "a@example.com", "password": STRONG_PASSWORD, "name": "N"}, "role"),
    ({"email": "a@example.com", "password": STRONG_PASSWORD, "name": "N", "role": "client", "is_admin": True},
     "is_admin"),
])
def test_wrong_types_and_unknown_fields_name_the_field(api, body, field):
    response = api.post("/api/v1/auth/register", json=body)
    problem = assert_problem(response, 422)
    assert field in [e["field"] for e in problem["errors"]]


def test_oversized_bodies_are_413(api):
    huge = json.dumps({"email": "a@example.com", "password": "x" * 2_000_000})
    response = api.post("/api/v1/auth/login", content=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("email", ["'; DROP TABLE users; --@example.com", "a@example.com' OR '1'='1",
                                   "admin@example.com\x00", "a@exa\u200bmple.com", "\u202e@example.com"])
def test_sql_ish_and_invisible_characters_in_email_are_422(api, email):
    response = api.post("/api/v1/auth/register", json={"email": email, "password": STRONG_PASSWORD,
                                                       "name": "Bobby Tables", "role": "client"})
    assert_problem(response, 422)


@pytest.mark.parametrize("name", ["Zoë Ångström", "李小龍", "Ольга", "🧽 Sponge", "O'Brien; DROP TABLE users"])
def test_unicode_and_quotes_in_names_are_stored_verbatim(api, name):
    response = api.post("/api/v1/auth/register", json={"email": unique_email(), "password": STRONG_PASSWORD,
                                                       "name": name, "role": "client"})
    assert response.status_code == 201, response.text
    token = response.json()["token"]
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["user"]["name"] == name


@pytest.mark.parametrize("name", ["", "   ", "a\u0000b", "\u202eevil", "x" * 600])
def test_empty_or_control_character_names_are_422(api, name):
    response = api.post("/api/v1/auth/register", json={"email": unique_email(), "password": STRONG_PASSWORD,
                                                       "name": name, "role": "client"})
    assert_problem(response, 422)


def test_unknown_routes_and_methods_are_problems(api):
    assert_problem(api.get("/api/v1/nope"), 404)
    assert_problem(api.get("/api/v1/auth/login"), 405)


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=1000", "cursor=%%%", "cursor=" + "A" * 600,
                                   "cursor=WyJub3QiLCAiYW4gaW50Il0"])
def test_bad_pagination_parameters_are_422(api, make_account, query):
    account = make_account()
    problem = assert_problem(api.get(f"/api/v1/me/tokens?{query}", headers=account.auth), 422)
    assert problem["errors"][0]["field"] in {"limit", "cursor"}
