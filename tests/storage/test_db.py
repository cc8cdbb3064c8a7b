"""The process's database pool."""

import asyncpg
from tortoise import connections, transactions

from storage.db import asyncpg_dsn


async def last_statement_of(settings, pid: int) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        return await conn.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await conn.close()


async def test_a_connection_given_back_to_the_pool_costs_no_reset_round_trip(db, settings):
    # given a query through the pool, which gives its connection back when it is done
    rows = await connections.get("default").execute_query_dict("SELECT pg_backend_pid() AS pid /* mine */")
    pid = rows[0]["pid"]

    # then the last statement that backend ran is that query, not asyncpg's reset
    # (SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL)
    assert "/* mine */" in await last_statement_of(settings, pid)


async def test_a_transaction_left_open_is_still_rolled_back_on_release(db, settings):
    # given a transaction that fails half way
    pid = None
    try:
        async with transactions.in_transaction() as tx:
            pid = (await tx.execute_query_dict("SELECT pg_backend_pid() AS pid"))[0]["pid"]
            await tx.execute_query("CREATE TEMP TABLE half_written (x int)")
            raise RuntimeError("fails")
    except RuntimeError:
        pass
    # then its backend is idle outside any transaction, with nothing of it left
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        state = await conn.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await conn.close()
    assert state == "idle"
