"""Opening and closing the database for a process. PostgreSQL through asyncpg, always."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tortoise import Tortoise, connections

from core.settings import Settings

MODEL_MODULES = ["storage.models"]


def asyncpg_dsn(database_url: str) -> str:
    """The URL as asyncpg wants it (postgresql://...)."""
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgres", "postgresql", "asyncpg"}:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(("postgresql",) + tuple(parts)[1:])


def tortoise_config(settings: Settings, *, database_url: str | None = None) -> dict[str, Any]:
    url = asyncpg_dsn(database_url or settings.database_url)
    parts = urlsplit(url)
    query = f"maxsize={settings.database_pool_max}&minsize=1"
    db_url = urlunsplit(("asyncpg", parts.netloc, parts.path, f"{parts.query}&{query}" if parts.query else query, ""))
    return {
        "connections": {"default": db_url},
        "apps": {"models": {"models": MODEL_MODULES, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


async def open_database(settings: Settings, *, database_url: str | None = None) -> None:
    # Requests and jobs run in tasks other than the one that opened the database, so the
    # context is shared process-wide (what Tortoise's own Sanic and Starlette integrations do).
    await Tortoise.init(config=tortoise_config(settings, database_url=database_url),
                        _enable_global_fallback=True)


async def close_database() -> None:
    await connections.close_all()


async def ping_database() -> None:
    """One round trip; raises when the database cannot answer."""
    await connections.get("default").execute_query("SELECT 1")
