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


async def test_a_server_that_never_answers_fails_the_connection_within_the_connect_timeout(settings):
    import socket
    import time

    from tortoise.backends.asyncpg import AsyncpgDBClient

    from storage.db import database_unreachable, tortoise_config

    # given a "server" that takes TCP connections and never says a word (a partition, a hung host)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/test"
    config = tortoise_config(settings.model_copy(update={"database_connect_timeout_s": 0.5}), database_url=url)
    client = AsyncpgDBClient(connection_name="probe", **config["connections"]["default"]["credentials"])
    # when a process opens its pool there (the client Tortoise makes from this configuration)
    started = time.monotonic()
    try:
        await client.create_connection(with_db=True)
    except BaseException as exc:  # noqa: BLE001 - the error is what is judged
        failed = exc
    else:
        raise AssertionError("connected to a server that never answered")
    finally:
        silent.close()
    # then it gives up after the setting, not asyncpg's 60 s, with an error the edge answers 503 for
    assert time.monotonic() - started < 5
    assert database_unreachable(failed)


def test_a_pooled_connection_left_inside_an_answer_the_server_never_finished_counts_as_the_database_away():
    from storage.db import database_unreachable

    # given what asyncpg raises when the pool hands out a connection still consuming the error
    # (state 2) or the cancellation (state 3) of its last query, which PostgreSQL shutting down
    # never finished (seen as a 500 in tests/faults/test_postgres_restart.py)
    for state in (2, 3):
        left = asyncpg.InternalClientError(f"cannot switch to state 12; another operation ({state}) is in progress")
        # then the request is answered "try again" (503), as any other sign of the server going away
        assert database_unreachable(left)
    # and other internal errors of asyncpg stay bugs (500)
    assert not database_unreachable(asyncpg.InternalClientError("cannot switch to state 12; another operation (11) is in progress"))
    assert not database_unreachable(asyncpg.InternalClientError("unknown error in protocol implementation"))
