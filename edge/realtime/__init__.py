"""The Pusher-protocol WebSocket edge: sockets, channel auth, NATS fan-out, the HTTP events API.

`install(app)` adds the routes and the per-worker hub; see docs/decisions/0006-realtime.md.
"""

from edge.realtime.routes import install

__all__ = ["install"]
