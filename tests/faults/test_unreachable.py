"""Which errors mean "a dependency is away, try again" (503 with Retry-After) and which are
bugs (500): told apart on errors raised for real by asyncpg and Ray."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import ray
from ray.exceptions import RayActorError

from actors.runtime import unreachable_dependency
from cli.embedded import free_port
from core.errors import Unavailable, problem_of
from storage.db import database_unreachable


async def raised(coro) -> Exception:
    with pytest.raises(Exception) as caught:
        await coro
    return caught.value


async def test_a_refused_connection_and_a_shut_down_server_are_unavailable(services):
    # a port nobody listens on: the socket error asyncpg raises while connecting
    refused = await raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/x", timeout=5))
    assert database_unreachable(refused)
    unavailable = unreachable_dependency(refused)
    assert isinstance(unavailable, Unavailable) and unavailable.dependency == "database"
    body, headers = problem_of(unavailable)
    assert (body["status"], body["code"], headers) == (503, "unavailable", {"Retry-After": "2"})
    # a session the server ends (what every open connection sees when PostgreSQL shuts down)
    conn = await asyncpg.connect(services["DATABASE_URL"])
    try:
        ended = await raised(conn.execute("SELECT pg_terminate_backend(pg_backend_pid())"))
    finally:
        conn.terminate()
    assert database_unreachable(ended)
    # and a connection used after it closed
    assert database_unreachable(await raised(conn.execute("SELECT 1")))


async def test_asyncpg_failing_to_clean_up_after_a_broken_connection_is_judged_by_the_break():
    # given the error a broken connection raised, and then the one the pool raised while taking
    # the connection back (what the edge saw during a PostgreSQL restart)
    refused = await raised(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/x", timeout=5))
    try:
        try:
            raise refused
        except OSError:
            raise asyncpg.InternalClientError(  # noqa: B904 -- asyncpg chains it implicitly, as here
                "cannot switch to state 15; another operation (2) is in progress")
    except asyncpg.InternalClientError as masking:
        # then the break decides: the database is away
        assert database_unreachable(masking)
    # but the same error with nothing behind it is a bug
    assert not database_unreachable(asyncpg.InternalClientError("cannot switch to state 15"))


async def test_a_refused_query_is_a_bug_not_an_outage(services):
    conn = await asyncpg.connect(services["DATABASE_URL"])
    try:
        for bad in ("SELEC 1", "SELECT 1/0", "SELECT * FROM no_such_table"):
            error = await raised(conn.execute(bad))
            assert not database_unreachable(error) and unreachable_dependency(error) is None
        # nor is misusing a connection: two queries at once on one
        first = conn.execute("SELECT pg_sleep(0.2)")
        second = await raised(_together(first, conn.execute("SELECT 1")))
        assert isinstance(second, asyncpg.InterfaceError) and not database_unreachable(second)
    finally:
        await conn.close()
    assert unreachable_dependency(ValueError("a plain bug")) is None
    assert unreachable_dependency(ConnectionRefusedError("not from asyncpg")) is None


async def _together(*coros):
    results = await asyncio.gather(*coros, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result


async def test_a_dead_shard_actor_is_unavailable(services):
    @ray.remote(num_cpus=0)
    class Doomed:
        def ping(self) -> str:
            return "pong"

    actor = Doomed.remote()
    assert await actor.ping.remote() == "pong"
    ray.kill(actor, no_restart=True)  # asynchronous: a call right after may still be answered
    died = None
    deadline = asyncio.get_running_loop().time() + 30
    while died is None:
        try:
            await actor.ping.remote()
        except RayActorError as exc:  # ActorDiedError, or ActorUnavailableError while Ray learns it
            died = exc
        assert asyncio.get_running_loop().time() < deadline, "the actor never died"
        await asyncio.sleep(0.05)
    unavailable = unreachable_dependency(died)
    assert isinstance(unavailable, Unavailable) and unavailable.dependency == "actors"
