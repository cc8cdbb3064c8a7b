"""Every form POST and script call must carry this session's CSRF token, or it is refused."""

from __future__ import annotations

import httpx

from storage.models import User
from tests.admin.conftest import Dashboard, MakePerson, Person


async def test_login_without_the_form_token_is_refused(browser: Dashboard, staff: Person):
    # given a browser that opened the login page
    await browser.form_token()

    # when a sign-in is posted without the page's token (as a forged cross-site form would)
    response = await browser.client.post("/admin/login", data={
        "username": staff.email, "password": staff.password})

    # then it is refused before the password is even looked at, and no session starts
    assert response.status_code == 403
    assert "security token" in response.text
    assert (await browser.client.get("/admin/user/list")).status_code == 303


async def test_action_with_a_wrong_token_is_refused_and_changes_nothing(dashboard: Dashboard,
                                                                         make_person: MakePerson):
    # given a signed-in staff member and a client account
    client = await make_person(role="client")

    # when a suspension arrives with a token that is not this session's
    response = await dashboard.row_action("user", "suspend", client.id, token="forged-token-value")

    # then it is refused as a problem document, and the client is not suspended
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "csrf_failed"
    assert (await User.get(id=client.user.id)).suspended_at is None


async def test_action_without_any_token_is_refused(dashboard: Dashboard, make_person: MakePerson):
    # given a signed-in staff member and a client account
    client = await make_person(role="client")

    # when a script posts the suspension with the session cookie but no token at all
    response = await dashboard.client.post(
        "/admin/_api/user/row-action", params={"name": "suspend", "pk": client.id})

    # then it is refused
    assert response.status_code == 403
    assert (await User.get(id=client.user.id)).suspended_at is None


async def test_a_token_planted_in_the_cookie_does_not_help_an_attacker(
        dashboard: Dashboard, admin_server, make_person: MakePerson):
    # given an attacker with a valid token of their own session
    async with httpx.AsyncClient(base_url=admin_server.url) as attacker:
        attacker_token = await Dashboard(attacker).form_token()
    client = await make_person(role="client")

    # when they plant it as the victim's CSRF cookie and submit it with the victim's session
    dashboard.client.cookies.set("starlette_admin_csrftoken", attacker_token)
    response = await dashboard.row_action("user", "suspend", client.id, token=attacker_token)

    # then the request is refused: the token must be the one kept in the victim's session
    assert response.status_code == 403
    assert (await User.get(id=client.user.id)).suspended_at is None


async def test_the_token_seen_before_signing_in_is_worthless_after(browser: Dashboard, staff: Person,
                                                                    make_person: MakePerson):
    # given a token read from the login page before signing in
    old_token = await browser.form_token()
    await browser.sign_in(staff)
    client = await make_person(role="client")

    # when it is used after sign-in
    stale = await browser.row_action("user", "suspend", client.id, token=old_token)

    # then it is refused, while the token issued at sign-in works
    assert stale.status_code == 403
    fresh = await browser.row_action("user", "suspend", client.id, token=browser.cookie_token)
    assert fresh.status_code == 200, fresh.text
