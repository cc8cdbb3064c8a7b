"""Who may call what: roles, suspension, expiry and revocation."""

import asyncio
from datetime import timedelta

from core.clock import utcnow
from storage import accounts
from storage.models import AuditLog, PersonalAccessToken
from tests.conftest import STRONG_PASSWORD, unique_email


async def make_admin(api, settings):
    email = unique_email("staff")
    await accounts.create_user(email=email, password=STRONG_PASSWORD, name="Sta Ff", role="admin",
                               settings=settings, verified=True)
    login = api.post("/api/v1/auth/login", json={"email": email, "password": STRONG_PASSWORD})
    assert login.status_code == 200
    return {"Authorization": f"Bearer {login.json()['token']}"}, login.json()["user"]["id"]


async def test_clients_and_cleaners_cannot_call_staff_endpoints(api, db, make_account):
    client, cleaner = make_account(role="client"), make_account(role="cleaner")
    for account in (client, cleaner):
        response = api.post(f"/api/v1/admin/users/{client.id}/suspend", headers=account.auth, json={})
        assert response.status_code == 403
        assert response.json()["code"] == "wrong_role"
        assert "admin" in response.json()["detail"]


async def test_a_suspended_user_is_signed_out_at_once_and_cannot_sign_in(api, db, settings, make_account):
    # given a client and a staff member
    client = make_account()
    admin_auth, admin_id = await make_admin(api, settings)
    # when staff suspend the client
    response = api.post(f"/api/v1/admin/users/{client.id}/suspend", headers=admin_auth,
                        json={"reason": "chargeback fraud"})
    # then the client's token stops working at once and they cannot sign in again
    assert response.status_code == 200 and response.json()["user"]["suspended"] is True
    me = api.get("/api/v1/me", headers=client.auth)
    assert me.status_code == 401 and me.json()["code"] == "account_suspended"
    login = api.post("/api/v1/auth/login", json={"email": client.email, "password": client.password})
    assert login.status_code == 401
    # and the suspension is in the audit trail with who did it and why
    row = await AuditLog.filter(entity_id=client.id, action="user.suspended").first()
    assert str(row.actor_id) == admin_id and row.after["reason"] == "chargeback fraud"
    # when reinstated, the old token works again
    assert api.post(f"/api/v1/admin/users/{client.id}/reinstate", headers=admin_auth).status_code == 200
    assert api.get("/api/v1/me", headers=client.auth).status_code == 200


async def test_staff_endpoints_hide_unknown_users_and_reject_bad_ids(api, db, settings):
    admin_auth, _ = await make_admin(api, settings)
    missing = api.post("/api/v1/admin/users/0190d6a0-0000-7000-8000-000000000000/suspend", headers=admin_auth)
    assert missing.status_code == 404
    bad = api.post("/api/v1/admin/users/not-a-uuid/suspend", headers=admin_auth)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "id"


async def test_an_expired_token_is_401(api, db, make_account):
    account = make_account()
    token_id = int(account.token.split("|")[0])
    # time passes beyond the token's expiry
    await PersonalAccessToken.filter(id=token_id).update(expires_at=utcnow() - timedelta(seconds=1))
    response = api.get("/api/v1/me", headers=account.auth)
    assert response.status_code == 401 and "expired" in response.json()["detail"]


async def test_last_used_time_is_recorded(api, db, make_account):
    account = make_account()
    token_id = int(account.token.split("|")[0])
    assert (await PersonalAccessToken.get(id=token_id)).last_used_at is None
    assert api.get("/api/v1/me", headers=account.auth).status_code == 200
    # recorded beside the request (one UPDATE for a loop tick's tokens), so shortly after it
    for _ in range(100):
        token = await PersonalAccessToken.get(id=token_id)
        if token.last_used_at is not None:
            break
        await asyncio.sleep(0.05)
    assert token.last_used_at is not None and utcnow() - token.last_used_at < timedelta(minutes=1)


async def test_a_new_tokens_first_request_lists_it_as_used_now(api, db, make_account):
    # given a token never used before
    account = make_account()
    token_id = int(account.token.split("|")[0])
    assert (await PersonalAccessToken.get(id=token_id)).last_used_at is None
    # when its first request lists the user's tokens
    listed = api.get("/api/v1/me/tokens", headers=account.auth)
    # then the token's own row says it was used just now, not never
    assert listed.status_code == 200
    row = next(t for t in listed.json()["data"] if t["id"] == token_id)
    assert row["current"] is True and row["last_used_at"] is not None
