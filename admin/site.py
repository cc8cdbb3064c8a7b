"""The dashboard itself: its pages, who may enter, and how its forms are protected."""

from __future__ import annotations

from pathlib import Path

from starlette.middleware import Middleware
from starlette.routing import Route
from starlette_admin import BaseAdmin

from admin.accounts import UserView
from admin.audit import AuditLogView
from admin.auth import StaffAuthProvider
from admin.bookings import BookingView
from admin.catalogue import ServiceTypeView
from admin.csrf import SessionCSRFMiddleware
from admin.outbox import OutboxView
from admin.verification import VerificationQueueView
from core.settings import Settings

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


class SpotlessAdmin(BaseAdmin):
    """starlette-admin with a CSRF check bound to the staff session.

    starlette-admin installs its own CSRFMiddleware, which compares a signed cookie with the
    submitted token; a cookie planted from a sibling domain passes it. Ours keeps the token in
    the signed session instead, under the same field, header and cookie names, so the stock
    templates and scripts work unchanged (admin/csrf.py).
    """

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        self.settings = settings
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def _init_csrf(self) -> None:
        self.middlewares.append(
            Middleware(SessionCSRFMiddleware, max_body_bytes=self.settings.max_body_bytes)
        )


def build_admin(settings: Settings) -> SpotlessAdmin:
    """The admin with every page registered; Tortoise's models must be initialised first."""
    admin = SpotlessAdmin(
        settings,
        title="Spotless operations",
        base_url="/admin",
        templates_dir=str(TEMPLATES_DIR),
        auth_provider=StaffAuthProvider(settings),
        secret_key=settings.admin_session_secret,
    )
    admin.add_view(UserView(settings))
    queue = VerificationQueueView(settings)
    admin.add_view(queue)
    # A plain GET (a download, not a page or an action), so it is a route of the admin app itself.
    admin.routes.insert(0, Route("/verification-queue/document", queue.download_document,
                                 name="verification-document"))
    admin.add_view(BookingView(settings))
    admin.add_view(ServiceTypeView())
    admin.add_view(AuditLogView())
    admin.add_view(OutboxView())
    return admin
