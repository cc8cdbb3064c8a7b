"""Running the edge (Sanic, several workers) and the admin (uvicorn) as production processes."""

from __future__ import annotations

from core.settings import Settings


def serve_edge(settings: Settings, *, host: str, port: int, workers: int) -> None:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from cli.embedded import EmbeddedError, require_free_port
    from edge.app import create_app
    from edge.realtime.frames import InboxProtocol

    try:
        require_free_port(port, "edge", "SPOTLESS_EDGE_PORT")
    except EmbeddedError as exc:
        raise SystemExit(f"spotless edge: {exc}") from None
    loader = AppLoader(factory=create_app)
    app = loader.load()
    if workers == 1:
        app.prepare(host=host, port=port, access_log=False, motd=False, single_process=True,
                    protocol=InboxProtocol)
        Sanic.serve_single(primary=app)
    else:
        app.prepare(host=host, port=port, workers=workers, access_log=False, motd=False,
                    protocol=InboxProtocol)
        Sanic.serve(primary=app, app_loader=loader)


def serve_admin(settings: Settings, *, host: str, port: int) -> None:
    import uvicorn

    from cli.embedded import EmbeddedError, require_free_port

    try:
        require_free_port(port, "admin", "SPOTLESS_ADMIN_PORT")
    except EmbeddedError as exc:
        raise SystemExit(f"spotless admin: {exc}") from None
    uvicorn.run("admin.app:create_app", factory=True, host=host, port=port, log_level="warning")
