"""Pusher signatures: channel authorisation strings and signed HTTP API requests. Pure.

Channel auth: "key:" + HMAC-SHA256(secret, "socket_id:channel[:channel_data]"), hex.
HTTP API: HMAC-SHA256(secret, "METHOD\\npath\\nk=v&..."), the query without auth_signature,
keys lower-cased and sorted, values unescaped, exactly as Pusher's server libraries sign.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from core.realtime import RealtimeApp


def _hmac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def channel_auth(app: RealtimeApp, socket_id: str, channel: str, channel_data: str | None = None) -> str:
    parts = [socket_id, channel] + ([channel_data] if channel_data is not None else [])
    return f"{app.key}:{_hmac(app.secret, ':'.join(parts))}"


def channel_auth_valid(
    app: RealtimeApp, socket_id: str, channel: str, auth: object, channel_data: str | None
) -> bool:
    if not isinstance(auth, str):
        return False
    return hmac.compare_digest(auth, channel_auth(app, socket_id, channel, channel_data))


def request_signature(secret: str, method: str, path: str, params: Mapping[str, str]) -> str:
    query = "&".join(
        f"{k}={v}" for k, v in sorted((k.lower(), v) for k, v in params.items() if k != "auth_signature")
    )
    return _hmac(secret, f"{method.upper()}\n{path}\n{query}")


def request_signature_valid(secret: str, method: str, path: str, params: Mapping[str, str]) -> bool:
    given = params.get("auth_signature", "")
    return hmac.compare_digest(given, request_signature(secret, method, path, params))
