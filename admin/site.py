"""The dashboard itself: its pages, who may enter, and how its forms are protected."""

from __future__ import annotations

from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette_admin import BaseAdmin

from admin.accounts import UserView
from admin.audit import AuditLogView
from admin.auth import StaffAuthProvider
from admin.bookings import BookingView
from admin.catalogue import ServiceTypeView
from admin.content import ContentPageView
from admin.conversations import DisputedConversationView
from admin.csrf import SessionCSRFMiddleware
from admin.dashboard import DashboardView
from admin.jobs import FailedJobView, QueuesView
from admin.outbox import OutboxView
from admin.reviews import ReviewView
from admin.runtime import AdminLinks
from admin.tortoise_view import TortoiseModelView
from admin.verification import VerificationQueueView
from core.errors import NotFound
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

    async def export_csv(self, request: Request) -> Response:
        """GET <admin>/export/<view>.csv with the list page's query: that list as CSV."""
        key = request.path_params["key"]
        view = next((v for v in self._model_views if v.key == key), None)
        if not isinstance(view, TortoiseModelView) or not view.is_accessible(request):
            raise NotFound(f"there is no list {key!r} to export")
        return await view.export_csv(request)


def build_admin(settings: Settings, links: AdminLinks | None = None) -> SpotlessAdmin:
    """The admin with every page registered; Tortoise's models must be initialised first.
    `links` are its NATS and Ray connections, started by the app's lifespan."""
    links = links or AdminLinks(settings)
    admin = SpotlessAdmin(
        settings,
        title="Spotless operations",
        base_url="/admin",
        templates_dir=str(TEMPLATES_DIR),
        index_view=DashboardView(settings, links),
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
    admin.add_view(DisputedConversationView())
    admin.add_view(ReviewView())
    admin.add_view(ServiceTypeView())
    admin.add_view(ContentPageView())
    admin.add_view(AuditLogView())
    admin.add_view(OutboxView())
    admin.add_view(FailedJobView(links))
    admin.add_view(QueuesView(settings, links))
    admin.routes.insert(0, Route("/export/{key}.csv", admin.export_csv, name="export-csv"))
    return admin
