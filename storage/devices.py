"""Push targets: the device tokens of each user's app installs and their notification preferences."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from tortoise import connections

from core.errors import Invalid, NotFound
from core.events import PushCategory
from storage.models import Device, NotificationPreference, User

PLATFORMS = ("ios", "android", "web")
KINDS = ("fid", "token")  # a Firebase installation ID, or a legacy FCM registration token
MAX_TOKEN_LENGTH = 4096


async def register_device(*, actor: User, platform: str, token: str, kind: str = "token") -> Device:
    """Remember `token` for `actor`; a token seen before moves to them (reinstall, account switch)."""
    if platform not in PLATFORMS:
        raise Invalid(f"platform must be one of {', '.join(PLATFORMS)}", field="platform")
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", field="kind")
    token = token.strip()
    if not 1 <= len(token) <= MAX_TOKEN_LENGTH:
        raise Invalid(f"token must be 1 to {MAX_TOKEN_LENGTH} characters", field="token")
    await connections.get("default").execute_query(
        """INSERT INTO devices (user_id, platform, kind, token) VALUES ($1, $2, $3, $4)
           ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id,
               platform = EXCLUDED.platform, kind = EXCLUDED.kind, last_seen_at = now()""",
        [actor.id, platform, kind, token])
    return await Device.get(token=token)


async def remove_device(*, actor: User, token: str) -> None:
    deleted = await Device.filter(user_id=actor.id, token=token).delete()
    if not deleted:
        raise NotFound("no such device token on your account")


async def preferences(*, actor: User) -> dict[str, bool]:
    """Each push category and whether `actor` receives it."""
    row = await NotificationPreference.get_or_none(user_id=actor.id)
    disabled = set(row.disabled) if row else set()
    return {str(c): str(c) not in disabled for c in PushCategory}


async def update_preferences(*, actor: User, changes: dict[str, Any]) -> dict[str, bool]:
    known = {str(c) for c in PushCategory}
    for category, enabled in changes.items():
        if category not in known:
            raise Invalid(f"unknown category {category!r}; choose from {', '.join(sorted(known))}",
                          field=category)
        if not isinstance(enabled, bool):
            raise Invalid("must be true or false", field=category)
    current = await preferences(actor=actor)
    wanted = {**current, **changes}
    if wanted == current:
        return current
    disabled = sorted(c for c, on in wanted.items() if not on)
    await connections.get("default").execute_query(
        """INSERT INTO notification_preferences (user_id, disabled) VALUES ($1, $2::jsonb)
           ON CONFLICT (user_id) DO UPDATE SET disabled = EXCLUDED.disabled, updated_at = now()""",
        [actor.id, json.dumps(disabled)])
    return wanted


async def push_targets(user_ids: list[UUID | str], category: str) -> list[tuple[str, str]]:
    """(token, kind) of every device of these users who have `category` switched on."""
    rows = await connections.get("default").execute_query_dict(
        """SELECT d.token, d.kind FROM devices d
           LEFT JOIN notification_preferences p ON p.user_id = d.user_id
           WHERE d.user_id = ANY($1::uuid[])
             AND NOT coalesce(p.disabled ? $2, false)
           ORDER BY d.id""",
        [[UUID(str(u)) for u in user_ids], category])
    return [(r["token"], r["kind"]) for r in rows]


async def forget_tokens(tokens: list[str]) -> int:
    """Delete tokens FCM reported as no longer valid."""
    if not tokens:
        return 0
    return int(await Device.filter(token__in=tokens).delete())
