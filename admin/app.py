"""The admin ASGI application (starlette-admin on uvicorn), served by `spotless admin`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from tortoise import Tortoise

from admin.errors import install_error_handlers
from admin.headers import SecurityHeaders
from admin.runtime import AdminLinks
from admin.site import build_admin
from core.settings import Settings, get_settings
from storage.db import MODEL_MODULES, close_database, open_database

SESSION_COOKIE = "spotless_admin_session"
SESSION_MAX_AGE_S = 8 * 3600  # a working day; signing in again is cheap, a stolen cookie is not


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    # The views read the models' relations when they are built, before the database opens.
    Tortoise.init_models(MODEL_MODULES, "models")
    links = AdminLinks(settings)
    admin = build_admin(settings, links)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await open_database(settings)
        await links.start()  # NATS and Ray connect in the background; pages work without them
        try:
            yield
        finally:
            await links.close()
            await close_database()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def home(request: Request) -> RedirectResponse:
        return RedirectResponse(request.url_for("admin:index"))

    app = Starlette(
        routes=[Route("/healthz", healthz), Route("/", home)],
        middleware=[Middleware(SecurityHeaders, hsts_max_age_s=settings.hsts_max_age_s),
                    Middleware(SessionMiddleware, secret_key=settings.admin_session_secret,
                               session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE_S,
                               same_site="lax")],
        lifespan=lifespan,
    )
    admin.mount_to(app)
    install_error_handlers(admin.app)
    return app
