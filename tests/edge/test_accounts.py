"""Sign-up, sign-in and sessions over HTTP against a running edge and the real database."""

import pytest

from tests.conftest import STRONG_PASSWORD, register, unique_email
from tests.edge.test_supply import assert_problem
from tests.mailbox import messages_to, token_in


def test_register_returns_the_user_and_a_working_token(api):
    # given a new e-mail address, in mixed case with spaces
    email = unique_email("New")
    # when someone registers as a client
    response = api.post("/api/v1/auth/register", json={
        "email": f"  {email.upper()} ", "password": STRONG_PASSWORD, "name": "Nia New", "role": "client",
        "device_name": "Pixel 9"})
    # then they get 201, a normalised account and a Sanctum-style token that works
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user"]["email"] == email.lower()
    assert body["user"]["role"] == "client" and body["user"]["email_verified"] is False
    token_id, _, secret = body["token"].partition("|")
    assert token_id == str(body["token_id"]) and len(secret) == 40
    me = api.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.json()["user"]["id"] == body["user"]["id"]
    assert me.json()["token"]["name"] == "Pixel 9"


def test_duplicate_email_is_a_409_whatever_its_case(api, make_account):
    account = make_account()
    response = api.post("/api/v1/auth/register", json={
        "email": account.email.upper(), "password": STRONG_PASSWORD, "name": "Dup", "role": "client"})
    assert response.status_code == 409
    assert response.json()["code"] == "email_taken"


def test_weak_password_gets_a_422_that_says_why(api):
    response = api.post("/api/v1/auth/register", json={
        "email": unique_email(), "password": "password123", "name": "Wes", "role": "client"})
    assert response.status_code == 422
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["code"] == "weak_password"
    assert body["errors"][0]["field"] == "password"
    assert "common" in body["errors"][0]["message"]


def test_nobody_registers_as_admin(api):
    response = api.post("/api/v1/auth/register", json={
        "email": unique_email(), "password": STRONG_PASSWORD, "name": "Eve", "role": "admin"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "role"


def test_login_issues_a_token_per_device_and_wrong_password_is_401(api, make_account):
    account = make_account(role="cleaner")
    good = api.post("/api/v1/auth/login", json={"email": account.email, "password": account.password,
                                                "device_name": "iPhone"})
    assert good.status_code == 200
    assert good.json()["user"]["role"] == "cleaner"
    assert good.json()["token"] != account.token
    bad = api.post("/api/v1/auth/login", json={"email": account.email, "password": "not the password"})
    assert bad.status_code == 401
    assert bad.json()["code"] == "bad_credentials"
    unknown = api.post("/api/v1/auth/login", json={"email": unique_email(), "password": "whatever-it-is"})
    assert unknown.status_code == 401
    assert unknown.json()["detail"] == bad.json()["detail"]  # no hint whether the account exists


def test_login_is_rate_limited_per_email_with_retry_after(api, make_account):
    # given an account (the test session allows 5 attempts per e-mail per minute)
    account = make_account()
    # when someone keeps guessing
    statuses = [api.post("/api/v1/auth/login", json={"email": account.email, "password": f"guess-{i}-wrong"}
                         ).status_code for i in range(6)]
    # then the sixth attempt is refused with 429 and a Retry-After, even with the right password
    assert statuses[:5] == [401] * 5 and statuses[5] == 429
    refused = api.post("/api/v1/auth/login", json={"email": account.email, "password": account.password})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["code"] == "rate_limited"


def test_logout_revokes_only_the_current_token(api, make_account):
    account = make_account()
    second = api.post("/api/v1/auth/login", json={"email": account.email, "password": account.password,
                                                  "device_name": "tablet"}).json()["token"]
    assert api.post("/api/v1/auth/logout", headers=account.auth).status_code == 204
    assert api.get("/api/v1/me", headers=account.auth).status_code == 401
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_logout_all_revokes_every_token(api, make_account):
    account = make_account()
    second = api.post("/api/v1/auth/login", json={"email": account.email, "password": account.password}
                      ).json()["token"]
    response = api.post("/api/v1/auth/logout-all", headers={"Authorization": f"Bearer {second}"})
    assert response.status_code == 200 and response.json()["revoked"] == 2
    for token in (account.token, second):
        assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_devices_are_listed_with_a_cursor_and_revoked_one_by_one(api, make_account):
    # given an account signed in on four devices
    account = make_account()
    for device in ("phone", "tablet", "laptop"):
        api.post("/api/v1/auth/login", json={"email": account.email, "password": account.password,
                                             "device_name": device})
    # when the user pages through their devices two at a time
    first = api.get("/api/v1/me/tokens?limit=2", headers=account.auth).json()
    second = api.get(f"/api/v1/me/tokens?limit=2&cursor={first['next_cursor']}", headers=account.auth).json()
    # then they see all four, newest first, the current one marked
    names = [t["name"] for t in first["data"] + second["data"]]
    assert names == ["laptop", "tablet", "phone", "pytest"]
    assert second["next_cursor"] is None
    assert [t["current"] for t in second["data"]] == [False, True]
    # and revoking the laptop's token removes it, while someone else's id is a 404
    laptop = first["data"][0]["id"]
    assert api.delete(f"/api/v1/me/tokens/{laptop}", headers=account.auth).status_code == 204
    assert api.delete(f"/api/v1/me/tokens/{laptop}", headers=account.auth).status_code == 404
    other = make_account()
    other_id = api.get("/api/v1/me/tokens", headers=other.auth).json()["data"][0]["id"]
    assert api.delete(f"/api/v1/me/tokens/{other_id}", headers=account.auth).status_code == 404
    assert api.get("/api/v1/me", headers=other.auth).status_code == 200


def test_a_malformed_token_id_is_a_422_naming_it_and_an_unknown_one_a_404(api, make_account):
    # given a signed-in user
    account = make_account()
    for raw in ("abc", "1.5", "+1", "1_0", "0x10", " 1", "\u0661"):
        # when they revoke a token by an id that is not an integer, then it is a 422 naming the field
        problem = assert_problem(api.delete(f"/api/v1/me/tokens/{raw}", headers=account.auth), 422, field="token_id")
        assert problem["errors"] == [{"field": "token_id", "message": "must be an integer"}], raw
    for raw in ("999999999", "0", "-1", "9" * 30, "9" * 5000):
        # and an integer that names none of their tokens is a 404, as before
        assert_problem(api.delete(f"/api/v1/me/tokens/{raw}", headers=account.auth), 404, code="not_found")
    # and their own token is untouched
    assert api.get("/api/v1/me", headers=account.auth).status_code == 200


@pytest.mark.parametrize("header", [
    None, "Bearer", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer 1|" + "x" * 40,
    "Bearer 99999999999999|" + "x" * 40, "Bearer 1|" + "x" * 40 + "' OR '1'='1",
])
def test_bad_tokens_are_401_problems(api, header):
    headers = {"Authorization": header} if header else {}
    response = api.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_email_verification_through_the_mailbox(api, db, settings):
    # given a new account; the sign-up e-mail is in the mailbox
    account = register(api)
    messages = await messages_to(settings, account.email)
    assert [m["Subject"] for m in messages] == ["Confirm your e-mail address"]
    token = token_in(messages[0])
    # when the link's token is posted
    response = api.post("/api/v1/auth/email/verify", json={"token": token})
    # then the address is verified, and the token cannot be used twice
    assert response.status_code == 200
    assert response.json()["user"]["email_verified"] is True
    assert api.get("/api/v1/me", headers=account.auth).json()["user"]["email_verified"] is True
    again = api.post("/api/v1/auth/email/verify", json={"token": token})
    assert again.status_code == 422 and again.json()["code"] == "token_invalid"
    # and asking for another link once verified is a conflict
    resend = api.post("/api/v1/auth/email/verification-notification", headers=account.auth)
    assert resend.status_code == 409


async def test_password_reset_signs_out_everywhere(api, db, settings):
    # given an account signed in on a device
    account = register(api)
    # when the user forgets their password and follows the e-mailed link
    assert api.post("/api/v1/auth/password/forgot", json={"email": account.email}).status_code == 202
    reset_mail = [m for m in await messages_to(settings, account.email)
                  if m["Subject"] == "Reset your Spotless password"]
    token = token_in(reset_mail[0])
    weak = api.post("/api/v1/auth/password/reset", json={"token": token, "password": "short"})
    assert weak.status_code == 422
    done = api.post("/api/v1/auth/password/reset", json={"token": token, "password": "a brand new passphrase"})
    # then the new password works, the old one and every old token do not, and the link is spent
    assert done.status_code == 200, done.text
    assert api.get("/api/v1/me", headers=account.auth).status_code == 401
    assert api.post("/api/v1/auth/login", json={"email": account.email, "password": account.password}
                    ).status_code == 401
    assert api.post("/api/v1/auth/login", json={"email": account.email, "password": "a brand new passphrase"}
                    ).status_code == 200
    assert api.post("/api/v1/auth/password/reset", json={"token": token, "password": "another passphrase!"}
                    ).status_code == 422
    assert any(m["Subject"] == "Your Spotless password was changed"
               for m in await messages_to(settings, account.email))


async def test_forgot_password_does_not_reveal_whether_an_account_exists(api, db, settings):
    email = unique_email("nobody")
    response = api.post("/api/v1/auth/password/forgot", json={"email": email})
    assert response.status_code == 202
    assert await messages_to(settings, email) == []


async def test_an_expired_reset_link_is_refused(api, db, settings):
    from datetime import timedelta

    from core.clock import utcnow
    from storage.models import OneTimeToken

    # given a reset link that has outlived its lifetime
    account = register(api)
    assert api.post("/api/v1/auth/password/forgot", json={"email": account.email}).status_code == 202
    token = token_in([m for m in await messages_to(settings, account.email)
                      if m["Subject"] == "Reset your Spotless password"][0])
    await OneTimeToken.filter(user_id=account.id, purpose="password_reset").update(
        expires_at=utcnow() - timedelta(seconds=1))
    # when it is used, then it is refused and the old password still works
    response = api.post("/api/v1/auth/password/reset", json={"token": token, "password": "a brand new passphrase"})
    assert response.status_code == 422 and response.json()["code"] == "token_invalid"
    assert api.post("/api/v1/auth/login", json={"email": account.email, "password": account.password}
                    ).status_code == 200
