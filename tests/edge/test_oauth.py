"""Social sign-in against a local JWKS / Graph fake with keys made in the test."""

import time

import pytest

from tests.conftest import register, unique_email
from tests.fakes.oauth import SigningKey


def sign_in(api, provider, **body):
    return api.post(f"/api/v1/auth/oauth/{provider}", json=body)


@pytest.mark.parametrize("provider", ["google", "apple"])
def test_a_good_id_token_creates_a_verified_account_then_signs_it_in(api, oauth_fake, provider):
    # given a provider-signed token for a new person
    email = unique_email(provider)
    token = oauth_fake.id_token(provider, sub=f"{provider}-sub-{email}", email=email)
    # when they sign in for the first time, then again
    first = sign_in(api, provider, id_token=token, role="cleaner", name="Sam Social")
    again = sign_in(api, provider, id_token=oauth_fake.id_token(provider, sub=f"{provider}-sub-{email}", email=email))
    # then an account is made once (201), verified, with the asked role, and later sign-ins reuse it (200)
    assert first.status_code == 201, first.text
    assert first.json()["user"]["email_verified"] is True
    assert first.json()["user"]["role"] == "cleaner"
    assert again.status_code == 200
    assert again.json()["user"]["id"] == first.json()["user"]["id"]
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {again.json()['token']}"}).status_code == 200


def test_a_forged_signature_is_refused(api, oauth_fake):
    forger = SigningKey(oauth_fake.google_key.kid)  # same key id, different key
    token = oauth_fake.id_token("google", email=unique_email(), key=forger)
    response = sign_in(api, "google", id_token=token)
    assert response.status_code == 401
    assert response.json()["code"] == "oauth_rejected"
    assert "signature" in response.json()["detail"]


def test_a_token_for_another_app_is_refused(api, oauth_fake):
    token = oauth_fake.id_token("google", email=unique_email(), aud="someone-elses-app.apps.googleusercontent.com")
    response = sign_in(api, "google", id_token=token)
    assert response.status_code == 401
    assert "audience" in response.json()["detail"]


def test_an_expired_token_is_refused(api, oauth_fake):
    past = int(time.time()) - 7200
    token = oauth_fake.id_token("apple", email=unique_email(), iat=past, exp=past + 600)
    response = sign_in(api, "apple", id_token=token)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_wrong_issuer_and_an_unknown_key_are_refused(api, oauth_fake):
    wrong_issuer = oauth_fake.id_token("google", email=unique_email(), iss="https://evil.example.com")
    assert sign_in(api, "google", id_token=wrong_issuer).status_code == 401
    unknown_key = oauth_fake.id_token("google", email=unique_email(), key=SigningKey("never-published"))
    response = sign_in(api, "google", id_token=unknown_key)
    assert response.status_code == 401 and "unknown key" in response.json()["detail"]


def test_the_nonce_must_match_when_given(api, oauth_fake):
    email = unique_email()
    token = oauth_fake.id_token("apple", email=email, nonce="n-123")
    assert sign_in(api, "apple", id_token=token, nonce="n-999").status_code == 401
    assert sign_in(api, "apple", id_token=token, nonce="n-123").status_code == 201


def test_a_verified_email_links_to_the_existing_account(api, oauth_fake):
    # given an account made with a password
    account = register(api)
    # when the same person signs in with Google, whose e-mail is verified
    response = sign_in(api, "google", id_token=oauth_fake.id_token("google", email=account.email))
    # then it is the same account
    assert response.status_code == 200
    assert response.json()["user"]["id"] == account.id


def test_an_unverified_email_does_not_link(api, oauth_fake):
    account = register(api)
    token = oauth_fake.id_token("apple", email=account.email, email_verified="false")
    response = sign_in(api, "apple", id_token=token)
    assert response.status_code == 409
    assert response.json()["code"] == "link_requires_verified_email"


def test_facebook_access_token_is_checked_with_debug_token(api, oauth_fake):
    email = unique_email("fb")
    good = sign_in(api, "facebook", access_token=oauth_fake.facebook_token(email=email, user_id="1001" + email[3:9]))
    assert good.status_code == 201, good.text
    assert good.json()["user"]["email"] == email
    invalid = sign_in(api, "facebook", access_token=oauth_fake.facebook_token(email=unique_email(), valid=False))
    assert invalid.status_code == 401
    other_app = sign_in(api, "facebook", access_token=oauth_fake.facebook_token(email=unique_email(), app_id="777"))
    assert other_app.status_code == 401 and "another app" in other_app.json()["detail"]
    assert sign_in(api, "facebook", access_token="EAAGnot-a-token-we-know").status_code == 401


def test_unknown_provider_and_missing_token_are_clear(api):
    assert sign_in(api, "myspace", id_token="x").status_code == 404
    missing = sign_in(api, "google", access_token="x")
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "id_token"
    garbage = sign_in(api, "google", id_token="not.a.jwt")
    assert garbage.status_code == 401
