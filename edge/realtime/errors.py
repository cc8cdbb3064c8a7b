"""WebSocket errors, kept apart from HTTP problems: each carries a Pusher protocol error code.

Codes (Pusher Channels protocol 7): 4000-4099 the client must not reconnect; 4100-4199 reconnect
after backing off; 4200-4299 reconnect at once; 4300-4399 other errors on a live connection.
`close` says whether the socket is closed with that code after the `pusher:error` frame. The
only translation into frames is edge/realtime/connection.py's `report`.
"""

from __future__ import annotations


class PusherError(Exception):
    code = 4200
    message = "Generic reconnect; try again"
    close = False

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class UnknownApp(PusherError):
    code = 4001
    message = "Application does not exist"
    close = True


class InvalidVersion(PusherError):
    code = 4007
    message = "Unsupported protocol version; this server speaks protocol 7"
    close = True


class NoProtocolVersion(PusherError):
    code = 4008
    message = "No protocol version supplied; connect with ?protocol=7"
    close = True


class Unauthorized(PusherError):
    code = 4009
    message = "Connection is unauthorized"


class OriginNotAllowed(Unauthorized):
    """The page that opened the socket is not among the app's `allowed_origins` (Reverb's answer)."""

    message = "Origin not allowed"
    close = True


class Revoked(Unauthorized):
    """Access was withdrawn: the token that authorised the socket's channels no longer works, or
    the app's server terminated the user's connections; the client must not reconnect as it was."""

    close = True
    REASONS = {"suspended": "the account is suspended", "password_reset": "the password was reset",
               "signed_out": "the session was signed out",
               "terminated": "the app's server terminated this user's connections"}

    def __init__(self, reason: str) -> None:
        super().__init__(f"Connection is unauthorized: {self.REASONS.get(reason, 'access was revoked')}")


class OverConnectionCapacity(PusherError):
    code = 4100
    message = "Over capacity; reconnect later"
    close = True


class OverSubscriptionCapacity(PusherError):
    code = 4100
    message = "Too many subscriptions on this connection"


class InvalidMessage(PusherError):
    code = 4200
    message = "Invalid message format"


class MessageTooLarge(PusherError):
    code = 4200
    message = "Message too large"


class Unavailable(PusherError):
    code = 4200
    message = "Realtime service temporarily unavailable; reconnect"
    close = True


class PongNotReceived(PusherError):
    code = 4201
    message = "Pong reply not received"
    close = True


class ClientEventRejected(PusherError):
    code = 4301
    message = "Client event rejected"


class ClientEventRateLimited(PusherError):
    code = 4301
    message = "Client event rejected due to rate limit"
