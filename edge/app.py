"""Building the Sanic application: config, blueprints, the error handler, lifecycle listeners."""

from __future__ import annotations

import logging

from sanic import Sanic
from sanic.config import Config

from actors import runtime
from actors.clients import PresenceClient, SpatialClient
from actors.layout import Layouts
from core.settings import Settings, get_settings
from edge import accounts, chat, health, oauth, realtime, staff, supply
from edge import bookings as bookings_api
from edge import content as content_api
from edge import devices as devices_api
from edge import evidence as evidence_api
from edge import invoices as invoices_api
from edge import payments as payments_api
from edge import presence as presence_api
from edge import reviews as reviews_api
from edge import search as search_api
from edge import service_areas as service_areas_api
from edge.api_doc import document_shared_responses, serve_finished_document
from edge.errors import handle_exception
from edge.oauth import JwksCache
from edge.observability import (
    SpotlessRequest,
    configure_logging,
    on_request,
    on_response,
    secret_values,
    tune_garbage_collector,
)
from edge.validation import refuse_nul_bytes
from storage.bus import Bus
from storage.db import close_database, open_database

log = logging.getLogger("spotless.edge")


def create_app(settings: Settings | None = None) -> Sanic:
    settings = settings or get_settings()
    config = Config()
    config.REQUEST_MAX_SIZE = settings.max_body_bytes
    config.FALLBACK_ERROR_FORMAT = "json"
    config.OAS_URL_PREFIX = "/api/v1/docs"
    config.CORS_ORIGINS = settings.cors_origins or ""
    config.CORS_ALWAYS_SEND = False
    config.CORS_SUPPORTS_CREDENTIALS = False
    config.CORS_ALLOW_HEADERS = ["authorization", "content-type", "x-request-id"]
    config.CORS_EXPOSE_HEADERS = ["x-request-id", "retry-after"]
    config.HEALTH = False
    config.AUTO_EXTEND = True
    config.KEEP_ALIVE_TIMEOUT = 75
    # Sanic's loggers hand their records to ours (configure_logging): JSON with request ids.
    app = Sanic("spotless", config=config, request_class=SpotlessRequest, configure_logging=False)
    app.ctx.settings = settings
    app.ctx.jwks_cache = JwksCache(ttl_s=settings.jwks_cache_ttl_s)
    app.ext.openapi.describe("Spotless API", version="1", description=(
        "REST API of the Spotless marketplace. Errors are RFC 9457 problem details."))
    app.ext.openapi.add_security_scheme("token", "http", scheme="bearer", bearer_format="<id>|<secret>")

    for bp in (health.bp, accounts.bp, oauth.bp, staff.bp, supply.bp, devices_api.bp):
        app.blueprint(bp)
    for bp in (service_areas_api.bp, presence_api.bp, search_api.bp):
        app.blueprint(bp)
    app.blueprint(chat.bp)
    app.blueprint(bookings_api.bp)
    app.blueprint(evidence_api.bp)
    app.blueprint(invoices_api.bp)
    app.blueprint(payments_api.bp)
    app.blueprint(reviews_api.bp)
    app.blueprint(content_api.bp)
    realtime.install(app)  # the Pusher-protocol socket, channel auth, events API
    app.error_handler.add(Exception, handle_exception)
    app.on_request(on_request)
    app.on_request(refuse_nul_bytes)
    app.on_response(on_response)
    document_shared_responses(app)
    serve_finished_document(app)

    @app.before_server_start
    async def start(app: Sanic) -> None:
        configure_logging(settings.log_level, as_json=settings.log_json, secrets=secret_values(settings))
        if not settings.database_url:
            raise SystemExit("DATABASE_URL is not set; run `spotless dev` for the embedded stack")
        await open_database(settings)
        app.ctx.bus = Bus(settings.nats_url or "nats://127.0.0.1:4222", name="spotless-edge")
        app.ctx.bus.start()
        runtime.connect(settings)
        # One client per worker: it coalesces this worker's concurrent calls per shard, routed
        # by the shard layout in PostgreSQL, which this worker follows through rebalances.
        app.ctx.layouts = Layouts(settings)
        app.ctx.layouts.follow(app.ctx.bus)
        app.ctx.spatial = SpatialClient(settings, layouts=app.ctx.layouts)
        app.ctx.presence = PresenceClient(settings, layouts=app.ctx.layouts)
        tune_garbage_collector()

    @app.after_server_stop
    async def stop(app: Sanic) -> None:
        await app.ctx.layouts.stop()
        await app.ctx.bus.close()
        await close_database()
        runtime.disconnect()

    return app
