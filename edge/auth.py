"""Bearer-token authentication and role checks, declared per endpoint with `@authenticated(...)`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from sanic import Request
from sanic_ext import openapi

from core.accounts import AccountError, Role
from core.errors import Forbidden, Unauthenticated
from storage.accounts import Session, resolve_token

Handler = Callable[..., Awaitable[Any]]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send your access token as 'Authorization: Bearer <token>'")
    return token.strip()


async def session_of(request: Request) -> Session:
    return await resolve_token(bearer_token(request))


def authenticated(*roles: Role) -> Callable[[Handler], Handler]:
    """Require a valid token; when roles are given, require one of them (403 otherwise)."""

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> Any:
            session = await session_of(request)
            if roles and session.user.role not in roles:
                allowed = " or ".join(str(r) for r in roles)
                raise Forbidden(
                    f"this endpoint is for {allowed} accounts; you are signed in as a {session.user.role}",
                    code=AccountError.WRONG_ROLE,
                )
            request.ctx.session = session
            return await handler(request, *args, **kwargs)

        # Read by the access-matrix test, which walks the route table: who may call what.
        wrapper.required_roles = tuple(roles)  # type: ignore[attr-defined]
        return openapi.secured("token")(wrapper)

    return decorate


def required_roles(handler: Any) -> tuple[Role, ...] | None:
    """The roles an `@authenticated` handler admits (empty: any signed-in user); None: public."""
    while handler is not None:
        if hasattr(handler, "required_roles"):
            roles: tuple[Role, ...] = handler.required_roles
            return roles
        handler = getattr(handler, "__wrapped__", None)
    return None


def current_session(request: Request) -> Session:
    session: Session = request.ctx.session
    return session
