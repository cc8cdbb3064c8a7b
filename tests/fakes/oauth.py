"""A local stand-in for Google's and Apple's JWKS endpoints and Facebook's Graph API.

Keys are made in the test; tokens are signed with them exactly as the providers sign theirs
(RS256 JWTs with a `kid`), and Facebook's `debug_token` / `me` answers use Graph's JSON shapes.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.server import LoopbackServer, QuietHandler

GOOGLE_ISSUER = "https://accounts.google.com"
APPLE_ISSUER = "https://appleid.apple.com"
GOOGLE_AUDIENCE = "spotless-web.apps.googleusercontent.com"
APPLE_AUDIENCE = "dev.spotless.app"
FACEBOOK_APP_ID = "424242"


class SigningKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


class OAuthFake(LoopbackServer):
    def __init__(self) -> None:
        self.google_key = SigningKey("google-key-1")
        self.apple_key = SigningKey("apple-key-1")
        self.facebook_tokens: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append(url.path)
                self.reply_json(*fake.route(url.path, query))

        super().__init__(Handler)


    def settings_env(self) -> dict[str, str]:
        return {
            "SPOTLESS_GOOGLE_JWKS_URL": f"{self.url}/google/oauth2/v3/certs",
            "SPOTLESS_APPLE_JWKS_URL": f"{self.url}/apple/auth/keys",
            "SPOTLESS_FACEBOOK_GRAPH_URL": f"{self.url}/facebook/v19.0",
        }

    # --- the provider endpoints ---
    def route(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path == "/google/oauth2/v3/certs":
            return 200, {"keys": [self.google_key.jwk()]}
        if path == "/apple/auth/keys":
            return 200, {"keys": [self.apple_key.jwk()]}
        if path == "/facebook/v19.0/debug_token":
            if query.get("access_token") != f"{FACEBOOK_APP_ID}|facebook-app-secret-for-tests":
                return 400, {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException",
                                       "code": 190}}
            user = self.facebook_tokens.get(query.get("input_token", ""))
            if user is None:
                return 200, {"data": {"is_valid": False, "error": {"code": 190, "message": "Malformed access token"}}}
            return 200, {"data": {"app_id": user["app_id"], "type": "USER", "application": "Spotless",
                                  "expires_at": int(time.time()) + 3600, "is_valid": user["valid"],
                                  "scopes": ["email", "public_profile"], "user_id": user["id"]}}
        if path == "/facebook/v19.0/me":
            user = self.facebook_tokens.get(query.get("access_token", ""))
            if user is None:
                return 400, {"error": {"message": "Invalid OAuth access token.", "type": "OAuthException",
                                       "code": 190}}
            profile = {"id": user["id"], "name": user["name"]}
            if user.get("email"):
                profile["email"] = user["email"]
            return 200, profile
        return 404, {"error": "not found"}

    # --- token makers for tests ---
    def id_token(self, provider: str, *, sub: str | None = None, email: str | None = None,
                 email_verified: Any = True, key: SigningKey | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": GOOGLE_ISSUER if provider == "google" else APPLE_ISSUER,
            "aud": GOOGLE_AUDIENCE if provider == "google" else APPLE_AUDIENCE,
            "sub": sub or secrets.token_hex(8),
            "iat": now,
            "exp": now + 3600,
            "email_verified": email_verified,
        }
        if email is not None:
            claims["email"] = email
        if provider == "google":
            claims["name"] = overrides.pop("name", "Gail Google")
        claims.update(overrides)
        signer = key or (self.google_key if provider == "google" else self.apple_key)
        return signer.sign(claims)

    def facebook_token(self, *, user_id: str | None = None, email: str | None = None, name: str = "Fay Book",
                       valid: bool = True, app_id: str = FACEBOOK_APP_ID) -> str:
        token = "EAAG" + secrets.token_urlsafe(24)
        self.facebook_tokens[token] = {"id": user_id or str(secrets.randbelow(10**15)), "email": email,
                                       "name": name, "valid": valid, "app_id": app_id}
        return token
