"""/api/v1/auth and /api/v1/me: sign-up, sign-in, tokens, e-mail verification, password reset."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from core.accounts import normalise_email
from core.errors import Invalid, NotFound
from core.pagination import parse_limit
from core.settings import Settings
from edge.auth import authenticated, current_session
from edge.responses import (
    Me,
    Revoked,
    SignedIn,
    Status,
    TokenPage,
    UserOnly,
    json_response,
    no_content,
)
from edge.validation import Body, RawSchema, openapi_body, paged, parse_body
from storage import accounts, ratelimit
from storage.accounts import IssuedToken
from storage.models import User

bp = Blueprint("accounts", url_prefix="/api/v1")


class RegisterBody(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    name: str = Field(max_length=500)
    role: str = Field(max_length=32, description="client or cleaner")
    device_name: str = Field(default="unnamed device", max_length=120)


class LoginBody(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    device_name: str = Field(default="unnamed device", max_length=120)


class TokenBody(Body):
    token: str = Field(max_length=256)


class ForgotPasswordBody(Body):
    email: str = Field(max_length=320)


class ResetPasswordBody(Body):
    token: str = Field(max_length=256)
    password: str = Field(max_length=1024)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.ctx.settings
    return settings


def client_ip(request: Request) -> str:
    return request.remote_addr or request.ip or "unknown"


def signed_in(user: User, issued: IssuedToken, *, status: int = 200) -> HTTPResponse:
    return json({"user": user.public(), "token": issued.plain_text, "token_id": issued.token.id},
                status=status)


def _email_key(raw: str) -> str:
    try:
        return normalise_email(raw)
    except Invalid:
        return raw.strip().lower()[:254]


@bp.post("/auth/register")
@openapi.definition(summary="Create a client or cleaner account", body=openapi_body(RegisterBody),
                    tag="accounts")
@openapi.response(201, json_response(SignedIn), "the new account, signed in on this device")
async def register(request: Request) -> HTTPResponse:
    settings = settings_of(request)
    body = parse_body(request, RegisterBody)
    await ratelimit.hit(f"register:ip:{client_ip(request)}", limit=settings.register_rate_per_ip,
                        window_s=settings.rate_window_s)
    user, issued = await accounts.register_user(
        email=body.email, password=body.password, name=body.name, role=body.role,
        device_name=body.device_name, settings=settings,
    )
    return signed_in(user, issued, status=201)


@bp.post("/auth/login")
@openapi.definition(summary="Sign in with e-mail and password", body=openapi_body(LoginBody),
                    tag="accounts")
@openapi.response(200, json_response(SignedIn), "signed in: the token for this device")
async def login(request: Request) -> HTTPResponse:
    settings = settings_of(request)
    body = parse_body(request, LoginBody)
    await ratelimit.hit(f"login:ip:{client_ip(request)}", limit=settings.login_rate_per_ip,
                        window_s=settings.rate_window_s)
    await ratelimit.hit(f"login:email:{_email_key(body.email)}", limit=settings.login_rate_per_email,
                        window_s=settings.rate_window_s)
    user, issued = await accounts.log_in(email=body.email, password=body.password,
                                         device_name=body.device_name, settings=settings)
    return signed_in(user, issued)


@bp.post("/auth/logout")
@openapi.definition(summary="Revoke the token used for this request", tag="accounts")
@no_content("signed out")
@authenticated()
async def logout(request: Request) -> HTTPResponse:
    session = current_session(request)
    await accounts.revoke_token(actor=session.user, token_id=session.token.id)
    return empty()


@bp.post("/auth/logout-all")
@openapi.definition(summary="Revoke every token of the signed-in user", tag="accounts")
@openapi.response(200, json_response(Revoked), "how many tokens were revoked")
@authenticated()
async def logout_all(request: Request) -> HTTPResponse:
    revoked = await accounts.revoke_all_tokens(actor=current_session(request).user)
    return json({"revoked": revoked})


@bp.post("/auth/email/verification-notification")
@openapi.definition(summary="Send the e-mail verification link again", tag="accounts")
@openapi.response(202, json_response(Status), "the link is on its way")
@authenticated()
async def resend_verification(request: Request) -> HTTPResponse:
    settings = settings_of(request)
    user = current_session(request).user
    await ratelimit.hit(f"verify:user:{user.id}", limit=3, window_s=settings.rate_window_s)
    await accounts.request_email_verification(actor=user, settings=settings)
    return json({"status": "sent"}, status=202)


@bp.post("/auth/email/verify")
@openapi.definition(summary="Verify an e-mail address with the token from the link",
                    body=openapi_body(TokenBody), tag="accounts")
@openapi.response(200, json_response(UserOnly), "the verified user")
async def verify_email(request: Request) -> HTTPResponse:
    body = parse_body(request, TokenBody)
    user = await accounts.verify_email(token=body.token)
    return json({"user": user.public()})


@bp.post("/auth/password/forgot")
@openapi.definition(summary="E-mail a password reset link (always 202)",
                    body=openapi_body(ForgotPasswordBody), tag="accounts")
@openapi.response(202, json_response(Status), "sent if the account exists")
async def forgot_password(request: Request) -> HTTPResponse:
    settings = settings_of(request)
    body = parse_body(request, ForgotPasswordBody)
    await ratelimit.hit(f"forgot:ip:{client_ip(request)}", limit=settings.login_rate_per_ip,
                        window_s=settings.rate_window_s)
    await ratelimit.hit(f"forgot:email:{_email_key(body.email)}", limit=3, window_s=settings.rate_window_s)
    await accounts.request_password_reset(email=body.email, settings=settings)
    return json({"status": "if the account exists, a reset link is on its way"}, status=202)


@bp.post("/auth/password/reset")
@openapi.definition(summary="Set a new password with the token from the reset link",
                    body=openapi_body(ResetPasswordBody), tag="accounts")
@openapi.response(200, json_response(UserOnly), "the user, signed out everywhere")
async def reset_password(request: Request) -> HTTPResponse:
    body = parse_body(request, ResetPasswordBody)
    user = await accounts.reset_password(token=body.token, password=body.password,
                                         settings=settings_of(request))
    return json({"user": user.public()})


@bp.get("/me")
@openapi.definition(summary="The signed-in user", tag="accounts")
@openapi.response(200, json_response(Me), "the user and the token of this request")
@authenticated()
async def me(request: Request) -> HTTPResponse:
    session = current_session(request)
    return json({"user": session.user.public(), "token": session.token.public(current_id=session.token.id)})


@bp.get("/me/tokens")
@openapi.definition(summary="The signed-in user's devices (access tokens), newest first", tag="accounts")
@openapi.response(200, json_response(TokenPage), "one page of tokens")
@paged
@authenticated()
async def list_tokens(request: Request) -> HTTPResponse:
    session = current_session(request)
    tokens, next_cursor = await accounts.list_tokens(
        actor=session.user, cursor=request.args.get("cursor"), limit=parse_limit(request.args.get("limit")),
        current=session.token)
    return json({"data": [t.public(current_id=session.token.id) for t in tokens], "next_cursor": next_cursor})


def _token_id(raw: str) -> int:
    """The token id in a path. Taken as a string, so "abc" is a 422 naming the field rather than
    the router's 404 for a route that does not exist; digits as the router's int took them."""
    if not raw.isascii() or not raw.removeprefix("-").isdigit():
        raise Invalid("must be an integer", field="token_id")
    try:
        return int(raw)
    except ValueError:  # more digits than Python converts: far outside a bigint, so no token
        raise NotFound("no such token") from None


@bp.delete("/me/tokens/<token_id:str>")
@openapi.definition(summary="Revoke one of the signed-in user's tokens", tag="accounts")
@openapi.parameter("token_id", RawSchema({"type": "integer"}), "path", required=True,
                   description="the token's id, as GET /api/v1/me/tokens lists it")
@no_content("revoked")
@authenticated()
async def revoke_token(request: Request, token_id: str) -> HTTPResponse:
    await accounts.revoke_token(actor=current_session(request).user, token_id=_token_id(token_id))
    return empty()

