"""Opaque keyset cursors. A cursor encodes the sort key of the last item the client saw."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from core.errors import Invalid

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def encode_cursor(key: Any) -> str:
    raw = json.dumps(key, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if not cursor:
        return None
    if len(cursor) > 512:
        raise Invalid("cursor is too long", field="cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise Invalid("cursor is not one this API issued", field="cursor") from exc


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit():
        raise Invalid("must be an integer", field="limit")
    value = int(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise Invalid(f"must be between 1 and {MAX_LIMIT}", field="limit")
    return value
