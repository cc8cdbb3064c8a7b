"""The WebSocket route `/app/{key}?protocol=7`, the per-worker realtime state and `install`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from sanic import Blueprint, Request, Sanic
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed

from core.realtime import RealtimeApp, parse_apps
from core.settings import Settings
from edge.chat import router_of
from edge.realtime import auth, channels_api, events_api
from edge.realtime.census import Census
from edge.realtime.connection import Connection, report, watch_activity
from edge.realtime.errors import (
    OriginNotAllowed,
    OverConnectionCapacity,
    PusherError,
    Unavailable,
    UnknownApp,
)
from edge.realtime.hub import Hub
from edge.realtime.presence import PresenceRegistry
from edge.realtime.protocol import check_protocol
from storage.bus import Bus
from storage.realtime_cache import ChannelCache

log = logging.getLogger("spotless.realtime")

bp = Blueprint("realtime_socket")


@dataclass
class RealtimeState:
    """What one edge worker holds for realtime: the configured apps, its hub, presence client,
    and the census that answers channel queries."""

    apps: tuple[RealtimeApp, ...]
    hub: Hub
    presence: PresenceRegistry
    census: Census

    def app_by_key(self, key: str) -> RealtimeApp:
        for app in self.apps:
            if app.key == key:
                return app
        raise UnknownApp(f"Application does not exist: no app has key {key[:40]!r}")


def realtime_state(app: Sanic) -> RealtimeState:
    state: RealtimeState = app.ctx.realtime
    return state


@bp.websocket("/app/<key>")
async def socket(request: Request, ws: WebsocketImplProtocol, key: str) -> None:
    state = realtime_state(request.app)
    settings: Settings = request.app.ctx.settings
    try:
        check_protocol(request.args.get("protocol"))
        app = state.app_by_key(key)
        if not app.origin_allowed(request.headers.get("origin")):
            raise OriginNotAllowed()
        if len(state.hub.connections[app.id]) >= app.max_connections:
            raise OverConnectionCapacity()
        if not state.hub.bus.connected:
            raise Unavailable()
    except PusherError as exc:
        await report(ws, exc)
        return
    connection = Connection(ws, app, state.hub, state.presence, settings,
                            cleaner_presence=request.app.ctx.presence,
                            # Chat shards publish as the platform's own (first) app: sends too.
                            chat=router_of(request) if app is state.apps[0] else None)
    state.hub.register(app.id, connection)
    try:
        await connection.run()
    except ConnectionClosed:
        pass  # the client went away; run() has already left its channels
    finally:
        state.hub.unregister(app.id, connection)


def install(app: Sanic) -> None:
    """Add realtime routes and listeners to the edge app (call once, in edge/app.py)."""
    settings: Settings = app.ctx.settings
    apps = parse_apps(settings.realtime_apps)
    # Frames over an app's limit get pusher:error; only far larger ones are cut at the socket.
    app.config.WEBSOCKET_MAX_SIZE = max(64 * 1024, 4 * max(a.max_message_bytes for a in apps))
    # Liveness is the protocol's own pusher:ping/pong (activity timeout); Sanic's extra WebSocket
    # ping every 20 s would be one more timer, frame and future per socket for nothing.
    app.config.WEBSOCKET_PING_INTERVAL = None
    app.ctx.realtime_apps = apps
    for blueprint in (bp, auth.bp, events_api.bp, channels_api.bp):
        app.blueprint(blueprint)

    @app.after_server_start
    async def start_realtime(app: Sanic) -> None:
        bus: Bus = app.ctx.bus
        hub, presence = Hub(bus, ChannelCache(settings)), PresenceRegistry(settings, layouts=app.ctx.layouts)
        app.ctx.realtime = RealtimeState(apps, hub, presence, Census(hub, presence, settings))
        app.ctx.realtime.hub.start()
        app.ctx.realtime.presence.start()
        app.ctx.realtime.census.start()
        app.ctx.realtime_sweeper = asyncio.get_running_loop().create_task(
            watch_activity(app.ctx.realtime.hub.connections, settings))

    @app.before_server_stop
    async def stop_realtime(app: Sanic) -> None:
        state = getattr(app.ctx, "realtime", None)
        if state is None:
            return
        app.ctx.realtime_sweeper.cancel()
        connections = [c for group in state.hub.connections.values() for c in group]
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.ws.close(4200, "Server restarting; reconnect")
        await asyncio.sleep(0)
        await state.census.stop()
        await state.hub.stop()
        await state.presence.stop()
