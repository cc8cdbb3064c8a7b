"""Pusher Channels protocol 7 frames: parsing what clients send, building what they receive. Pure.

Frames are JSON objects {"event", "channel"?, "data"?}. Servers send `data` as a JSON-encoded
string (pusher-js and the other clients decode it); clients may send an object or a string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edge.realtime.errors import InvalidMessage, InvalidVersion, NoProtocolVersion

PROTOCOL_VERSION = 7
MIN_PROTOCOL_VERSION = 5  # clients of protocol 5-7 speak the same frames


@dataclass(frozen=True)
class Frame:
    event: str
    channel: str | None
    data: Any


def check_protocol(raw: str | None) -> int:
    if raw is None or raw == "":
        raise NoProtocolVersion()
    if not raw.isascii() or not raw.isdigit() or not (MIN_PROTOCOL_VERSION <= int(raw) <= PROTOCOL_VERSION):
        raise InvalidVersion()
    return int(raw)


def parse_frame(raw: str | bytes) -> Frame:
    """Decode one client frame; raise InvalidMessage for anything that is not one."""
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting deeper than the parser allows
        raise InvalidMessage("Invalid message format: not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidMessage("Invalid message format: not a JSON object")
    event, channel = payload.get("event"), payload.get("channel")
    if not isinstance(event, str) or not event:
        raise InvalidMessage("Invalid message format: missing event")
    if channel is not None and not isinstance(channel, str):
        raise InvalidMessage("Invalid message format: channel must be a string")
    return Frame(event, channel, payload.get("data"))


def data_object(frame: Frame) -> dict[str, Any]:
    """The frame's data as an object (clients may send it JSON-encoded)."""
    data = frame.data
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidMessage("Invalid message format: data is not a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidMessage("Invalid message format: data must be a JSON object")
    return data


def encode(event: str, data: Any = None, *, channel: str | None = None, user_id: str | None = None) -> str:
    """A server frame; `data` that is not already a string is JSON-encoded into one."""
    frame: dict[str, Any] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    if data is not None:
        frame["data"] = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    if user_id is not None:
        frame["user_id"] = user_id
    return json.dumps(frame, separators=(",", ":"))


def error_frame(code: int, message: str) -> str:
    # pusher:error carries its data as an object, as Pusher's own servers send it.
    return json.dumps({"event": "pusher:error", "data": {"code": code, "message": message}})


def presence_data(members: dict[str, Any]) -> dict[str, Any]:
    return {"presence": {"ids": list(members), "hash": members, "count": len(members)}}
