"""Bytes PostgreSQL cannot store and methods a route does not answer: 4xx problems, never 500s."""

from __future__ import annotations

import pytest

from tests.conftest import unique_email


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


@pytest.mark.parametrize("body, field", [
    ({"email": "\n\t\u0000@example.com"}, "email"),
    ({"email": "a@example.com", "\u0000": "x"}, "\u0000"),
])
def test_a_nul_character_in_a_json_field_is_a_422_naming_it(api, body, field):
    # given a body whose field holds NUL (PostgreSQL text cannot), when it is sent, then 422
    problem = assert_problem(api.post("/api/v1/auth/password/forgot", json=body), 422)
    assert problem["errors"][0]["field"] == field


def test_a_nul_character_deep_in_a_body_is_found(api, make_account):
    cleaner = make_account(role="cleaner")
    body = {"weekly": [{"weekday": 0, "start_minute": 0, "end_minute": 60}],
            "exceptions": [{"date": "2030-01-01\u0000", "kind": "off"}]}
    problem = assert_problem(api.put("/api/v1/cleaner/availability", headers=cleaner.auth, json=body), 422)
    assert problem["errors"][0]["field"] == "exceptions.0.date"


@pytest.mark.parametrize("url", ["/api/v1/me/tokens?cursor=%00", "/api/v1/me/devices/fcm%00token",
                                 "/api/v1/me/tokens?limit=1%00"])
def test_a_nul_character_in_the_url_is_a_422(api, make_account, url):
    account = make_account()
    method = "DELETE" if "devices" in url else "GET"
    problem = assert_problem(api.request(method, url, headers=account.auth), 422)
    assert problem["errors"][0]["field"] == "url"


def test_registering_with_nul_in_the_name_stores_nothing(api):
    email = unique_email()
    assert_problem(api.post("/api/v1/auth/register", json={
        "email": email, "password": "correct horse battery staple", "name": "Ana\u0000", "role": "client"}), 422)
    assert api.post("/api/v1/auth/login", json={"email": email, "password": "correct horse battery staple"}
                    ).status_code == 401


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/api/v1/admin/users/0190d6a0-0000-7000-8000-000000000000/suspend", {"POST"}),
    ("TRACE", "/api/v1/bookings/0190d6a0-0000-7000-8000-000000000000", {"GET"}),
    ("PATCH", "/api/v1/me", {"GET"}),
])
def test_a_method_the_route_does_not_answer_is_a_405_naming_the_allowed_ones(api, method, path, allowed):
    response = api.request(method, path)
    assert_problem(response, 405)
    named = {m.strip() for m in response.headers["allow"].split(",")}
    assert allowed <= named and method not in named
