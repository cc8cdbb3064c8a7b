"""Social sign-in: verify a provider's token, then hand the identity to storage.accounts.

Google and Apple send OpenID Connect ID tokens, checked against the provider's JWKS (signature,
issuer, audience, expiry, nonce). Facebook sends an access token, checked with the Graph API's
`debug_token`. Every provider URL is a setting, so tests point them at local fakes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic_ext import openapi

from core.accounts import AccountError
from core.errors import Invalid, NotFound, Unauthenticated, Unavailable
from core.settings import Settings
from edge.accounts import client_ip, settings_of, signed_in
from edge.responses import SignedIn, json_response
from edge.validation import Body, openapi_body, parse_body
from storage import accounts, ratelimit
from storage.accounts import ProviderIdentity

bp = Blueprint("oauth", url_prefix="/api/v1/auth/oauth")

PROVIDERS = ("google", "apple", "facebook")


class OAuthBody(Body):
    id_token: str | None = Field(default=None, max_length=8192, description="Google and Apple")
    access_token: str | None = Field(default=None, max_length=4096, description="Facebook")
    nonce: str | None = Field(default=None, max_length=256)
    role: str = Field(default="client", max_length=32, description="role of a new account")
    name: str | None = Field(default=None, max_length=500, description="Apple shares it only once")
    device_name: str = Field(default="unnamed device", max_length=120)


def rejected(detail: str) -> Unauthenticated:
    return Unauthenticated(f"the provider token was rejected: {detail}", code=AccountError.OAUTH_REJECTED)


@dataclass
class JwksCache:
    """Signing keys per JWKS URL, refreshed after a TTL or when an unknown key id shows up."""

    ttl_s: int
    keys: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    async def key_for(self, url: str, kid: str, *, timeout_s: float) -> Any:
        for force in (False, True):
            jwks = await self._jwks(url, force=force, timeout_s=timeout_s)
            for jwk in jwks.get("keys", []):
                if jwk.get("kid") == kid:
                    return jwt.PyJWK(jwk).key
        raise rejected("it was signed with an unknown key")

    async def _jwks(self, url: str, *, force: bool, timeout_s: float) -> dict[str, Any]:
        cached = self.keys.get(url)
        if cached and not force and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        if cached and force and time.monotonic() - cached[0] < 10:
            return cached[1]  # an unknown kid must not let anyone hammer the provider
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                response = await client.get(url)
                response.raise_for_status()
                jwks = response.json()
        except (httpx.HTTPError, ValueError):
            raise Unavailable("the sign-in provider's keys could not be fetched", dependency="oauth-provider") from None
        self.keys[url] = (time.monotonic(), jwks)
        return jwks


async def verify_id_token(
    token: str, *, jwks_url: str, audiences: list[str], issuers: list[str], nonce: str | None,
    cache: JwksCache, settings: Settings,
) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise rejected("it is not a JWT") from None
    if header.get("alg") not in {"RS256", "ES256"} or not isinstance(header.get("kid"), str):
        raise rejected("unsupported signing algorithm")
    key = await cache.key_for(jwks_url, header["kid"], timeout_s=settings.oauth_http_timeout_s)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[header["alg"]], audience=audiences, issuer=issuers,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]}, leeway=30,
        )
    except jwt.ExpiredSignatureError:
        raise rejected("it has expired") from None
    except jwt.InvalidAudienceError:
        raise rejected("it was issued for another app (audience)") from None
    except jwt.InvalidIssuerError:
        raise rejected("it was issued by someone else (issuer)") from None
    except jwt.InvalidSignatureError:
        raise rejected("its signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise rejected(str(exc)) from None
    if nonce is not None:
        expected = {nonce, hashlib.sha256(nonce.encode()).hexdigest()}
        if claims.get("nonce") not in expected:
            raise rejected("the nonce does not match")
    return claims


def _truthy(value: Any) -> bool:
    return value is True or value == "true"


async def google_identity(body: OAuthBody, settings: Settings, cache: JwksCache) -> ProviderIdentity:
    audiences = settings.split(settings.google_client_ids)
    if not audiences:
        raise NotFound("Google sign-in is not configured", code=AccountError.OAUTH_UNCONFIGURED)
    if not body.id_token:
        raise Invalid("Google sign-in needs the id_token", field="id_token")
    claims = await verify_id_token(body.id_token, jwks_url=settings.google_jwks_url, audiences=audiences,
                                   issuers=settings.split(settings.google_issuers), nonce=body.nonce,
                                   cache=cache, settings=settings)
    return ProviderIdentity("google", str(claims["sub"]), claims.get("email"),
                            _truthy(claims.get("email_verified")), claims.get("name") or body.name)


async def apple_identity(body: OAuthBody, settings: Settings, cache: JwksCache) -> ProviderIdentity:
    audiences = settings.split(settings.apple_client_ids)
    if not audiences:
        raise NotFound("Apple sign-in is not configured", code=AccountError.OAUTH_UNCONFIGURED)
    if not body.id_token:
        raise Invalid("Apple sign-in needs the id_token", field="id_token")
    claims = await verify_id_token(body.id_token, jwks_url=settings.apple_jwks_url, audiences=audiences,
                                   issuers=[settings.apple_issuer], nonce=body.nonce, cache=cache,
                                   settings=settings)
    return ProviderIdentity("apple", str(claims["sub"]), claims.get("email"),
                            _truthy(claims.get("email_verified")), body.name)


async def facebook_identity(body: OAuthBody, settings: Settings) -> ProviderIdentity:
    if not settings.facebook_app_id or not settings.facebook_app_secret:
        raise NotFound("Facebook sign-in is not configured", code=AccountError.OAUTH_UNCONFIGURED)
    if not body.access_token:
        raise Invalid("Facebook sign-in needs the access_token", field="access_token")
    app_token = f"{settings.facebook_app_id}|{settings.facebook_app_secret}"
    proof = hmac.new(settings.facebook_app_secret.encode(), body.access_token.encode(), hashlib.sha256).hexdigest()
    base = settings.facebook_graph_url.rstrip("/")
    try:
        async with httpx.AsyncClient(timeout=settings.oauth_http_timeout_s) as client:
            debug = await client.get(f"{base}/debug_token",
                                     params={"input_token": body.access_token, "access_token": app_token})
            data = debug.json().get("data") or {}
            if debug.status_code != 200 or not data.get("is_valid"):
                raise rejected("Facebook says the access token is not valid")
            if str(data.get("app_id")) != settings.facebook_app_id:
                raise rejected("the access token belongs to another app")
            if data.get("expires_at") and int(data["expires_at"]) and int(data["expires_at"]) < time.time():
                raise rejected("it has expired")
            me = await client.get(f"{base}/me", params={"fields": "id,name,email", "access_token": body.access_token,
                                                       "appsecret_proof": proof})
            profile = me.json()
    except (httpx.HTTPError, ValueError):
        raise Unavailable("Facebook could not be reached", dependency="oauth-provider") from None
    if me.status_code != 200 or str(profile.get("id")) != str(data.get("user_id")):
        raise rejected("Facebook returned a different user for the token")
    # Facebook only shares addresses its users have confirmed.
    return ProviderIdentity("facebook", str(profile["id"]), profile.get("email"),
                            bool(profile.get("email")), profile.get("name") or body.name)


@bp.post("/<provider:str>")
@openapi.definition(summary="Sign in or up with Google, Apple or Facebook",
                    body=openapi_body(OAuthBody), tag="accounts")
@openapi.response(201, json_response(SignedIn), "a new account, signed in")
@openapi.response(200, json_response(SignedIn), "signed in to the existing account")
async def oauth_sign_in(request: Request, provider: str) -> HTTPResponse:
    if provider not in PROVIDERS:
        raise NotFound(f"unknown sign-in provider {provider[:32]!r}; use one of {', '.join(PROVIDERS)}")
    settings = settings_of(request)
    body = parse_body(request, OAuthBody)
    await ratelimit.hit(f"oauth:ip:{client_ip(request)}", limit=settings.login_rate_per_ip,
                        window_s=settings.rate_window_s)
    cache: JwksCache = request.app.ctx.jwks_cache
    if provider == "google":
        identity = await google_identity(body, settings, cache)
    elif provider == "apple":
        identity = await apple_identity(body, settings, cache)
    else:
        identity = await facebook_identity(body, settings)
    user, issued, created = await accounts.sign_in_with_identity(
        identity, role=body.role, device_name=body.device_name, settings=settings
    )
    return signed_in(user, issued, status=201 if created else 200)
