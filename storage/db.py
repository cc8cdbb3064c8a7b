"""Opening and closing the database for a process. PostgreSQL through asyncpg, always."""

from __future__ import annotations

import contextlib
import re
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tortoise import Tortoise, connections
from tortoise.backends.base.client import TransactionContextPooled
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.connection import get_connections

from core.settings import Settings

MODEL_MODULES = ["storage.models"]


def asyncpg_dsn(database_url: str) -> str:
    """The URL as asyncpg wants it (postgresql://...)."""
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgres", "postgresql", "asyncpg"}:
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parts.scheme!r}")
    return urlunsplit(("postgresql",) + tuple(parts)[1:])


async def keep_session(_connection: asyncpg.Connection) -> None:
    """What a pool does to a connection given back, instead of asyncpg's default reset.

    The default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    release: one more round trip per query (about 4 % of an edge worker's CPU in a busy chat profile). Nothing
    here leaves session state on a pooled connection (no session advisory locks, LISTEN, SET or
    cursors), and asyncpg still rolls back a transaction left open before this is called."""


def tortoise_config(settings: Settings, *, database_url: str | None = None) -> dict[str, Any]:
    url = asyncpg_dsn(database_url or settings.database_url)
    parts = urlsplit(url)
    query = f"maxsize={settings.database_pool_max}&minsize=1"
    db_url = urlunsplit(("asyncpg", parts.netloc, parts.path, f"{parts.query}&{query}" if parts.query else query, ""))
    connection = expand_db_url(db_url)
    connection["credentials"]["reset"] = keep_session  # handed to asyncpg.create_pool
    # asyncpg waits 60 s for a server that does not answer (a partition, not a refusal); a
    # request should get its 503 long before that.
    connection["credentials"]["timeout"] = settings.database_connect_timeout_s
    return {
        "connections": {"default": connection},
        "apps": {"models": {"models": MODEL_MODULES, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


def _restore_connection_on_failure() -> None:
    """Tortoise's pooled `in_transaction()` takes a pool connection and makes it the task's
    current connection before sending BEGIN, and gives it back only on a clean path: when BEGIN
    fails, or releasing the connection fails after a broken one (PostgreSQL went away
    mid-transaction), the task keeps the dead connection as its current one and runs every
    later transaction as a savepoint on it (a relay loop never recovers), and a failed BEGIN
    leaves the pool one connection short for good. Wrapped once per process: whatever fails,
    the connection goes back to the pool and the task's current connection is restored."""
    enter, leave = TransactionContextPooled.__aenter__, TransactionContextPooled.__aexit__
    if getattr(enter, "restores_connection", False):
        return

    def restore(context: TransactionContextPooled) -> bool:
        token = getattr(context, "token", None)  # set once the connection was taken
        if token is None or token._used:
            return False
        get_connections().reset(token)
        return True

    async def __aenter__(self: TransactionContextPooled) -> Any:
        try:
            return await enter(self)
        except BaseException:
            pool = self.client._parent._pool
            if restore(self) and pool is not None:
                with contextlib.suppress(Exception):  # the error to report is BEGIN's
                    await pool.release(self.client._connection)
            raise

    async def __aexit__(self: TransactionContextPooled, *exc_info: Any) -> None:
        try:
            await leave(self, *exc_info)
        finally:
            restore(self)

    __aenter__.restores_connection = True  # type: ignore[attr-defined]
    TransactionContextPooled.__aenter__ = __aenter__  # type: ignore[method-assign]
    TransactionContextPooled.__aexit__ = __aexit__  # type: ignore[method-assign, assignment]


async def open_database(settings: Settings, *, database_url: str | None = None) -> None:
    _restore_connection_on_failure()
    # Requests and jobs run in tasks other than the one that opened the database, so the
    # context is shared process-wide (what Tortoise's own Sanic and Starlette integrations do).
    await Tortoise.init(config=tortoise_config(settings, database_url=database_url),
                        _enable_global_fallback=True)


async def close_database() -> None:
    await connections.close_all()


async def ping_database() -> None:
    """One round trip; raises when the database cannot answer."""
    await connections.get("default").execute_query("SELECT 1")


# PostgreSQL is away or going away: restarting, failing over, shutting down, out of slots, or the
# connection broke mid-query. What a retry later can fix, unlike a refused query.
_SERVER_AWAY = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection lost mid-query
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutting down, starting up, query cancelled
    asyncpg.exceptions.TooManyConnectionsError,
)


# asyncpg's words when a pooled connection handed out is still inside its last user's operation:
# consuming an error (state 2) or a cancellation (3) whose end the server never sent. A release
# waits for a live server to finish both, so this is a connection the server dropped mid-answer
# (seen while PostgreSQL shut down under load); its socket closes a moment later and the pool
# replaces it. Nothing of the new request was sent.
_LEFT_MID_ANSWER = re.compile(r"another operation \((2|3)\) is in progress")


def _raised_in_asyncpg(tb: TracebackType | None) -> bool:
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith("asyncpg."):
            return True
        tb = tb.tb_next
    return False


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) says the database could not be reached or
    dropped the connection, rather than refusing a query: the caller answers "try again"."""
    seen: BaseException | None = exc
    for _ in range(5):  # the cause chain of a wrapped error; bounded
        if seen is None:
            return False
        if isinstance(seen, _SERVER_AWAY):
            return True
        if isinstance(seen, OSError) and _raised_in_asyncpg(seen.__traceback__):
            return True  # refused or reset sockets, connect timeouts
        if isinstance(seen, asyncpg.InterfaceError) and "clos" in str(seen):
            return True  # a connection or pool closed under the query (not a misuse of one)
        if isinstance(seen, asyncpg.InternalClientError) and _LEFT_MID_ANSWER.search(str(seen)):
            return True
        if seen.__cause__ is None and isinstance(seen, asyncpg.InternalClientError | asyncpg.InterfaceError):
            # asyncpg failing to clean up (the pool resetting a connection that broke mid-query
            # as it takes it back) hides the error that broke it: judge that one
            seen = seen.__context__
        else:
            seen = seen.__cause__
    return False
