"""The outbox relay: committed rows reach JetStream once, in id order, even with NATS away."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from uuid import UUID

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from tortoise.transactions import in_transaction

from cli.embedded import EmbeddedNats, free_port
from core.events import EVENT_ID_HEADER, job_subject, jobs_stream
from core.ids import new_id
from core.settings import Settings
from jobs.relay import publish_pending, relay_until_empty
from jobs.runner import connect_nats
from jobs.streams import ensure_streams
from storage import outbox
from storage.models import OutboxEvent
from tests.jobs.conftest import eventually, relay_loop, running


async def enqueue_many(event_type: str, count: int) -> list[Any]:
    ids = []
    for n in range(count):
        async with in_transaction() as tx:
            ids.append(await outbox.enqueue(event_type, {"n": n}, using=tx))
    return ids


async def read_subject(js: JetStreamContext, settings: Settings, event_type: str, *,
                       expect: int, wait_s: float = 2.0) -> list[Msg]:
    """Every message on the event type's subject (an ephemeral consumer from the start)."""
    sub = await js.pull_subscribe(job_subject(event_type, prefix=settings.jetstream_prefix),
                                  stream=jobs_stream(settings.jetstream_prefix))
    found: list[Msg] = []
    deadline = asyncio.get_running_loop().time() + wait_s
    while asyncio.get_running_loop().time() < deadline:
        try:
            batch = await sub.fetch(100, timeout=0.3)
        except TimeoutError:
            if len(found) >= expect:
                break
            continue
        for msg in batch:
            await msg.ack()
        found.extend(batch)
    await sub.unsubscribe()
    return found


def event_ids(messages: list[Msg]) -> list[str]:
    return [m.headers[EVENT_ID_HEADER] for m in messages]


async def test_outbox_rows_reach_jetstream_in_id_order_with_the_event_id(nc: Client, settings, test_type):
    # given five committed events
    ids = await enqueue_many(test_type, 5)
    # when the relay runs
    await relay_until_empty(nc, settings)
    # then JetStream holds them in order, de-duplicable by event id, and the rows are sent
    messages = await read_subject(nc.jetstream(), settings, test_type, expect=5)
    assert event_ids(messages) == [str(i) for i in ids]
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [str(i) for i in ids]
    assert [m.data for m in messages] == [b'{"n": %d}' % n for n in range(5)]
    assert await OutboxEvent.filter(event_id__in=ids, sent_at=None).count() == 0


async def test_two_relays_at_once_publish_each_event_once_in_order(nc: Client, settings, test_type):
    # given 300 pending events and a second relay process (its own connection)
    ids = await enqueue_many(test_type, 300)
    other = await connect_nats(settings, name="second-relay")
    small = settings.model_copy(update={"relay_batch": 25})
    # when both relay at the same time
    try:
        async with running(relay_loop(nc, small), relay_loop(other, small)):
            await eventually(lambda: _none_pending(ids))
    finally:
        await other.close()
    # then every event is on JetStream exactly once, in id order
    messages = await read_subject(nc.jetstream(), settings, test_type, expect=300)
    assert event_ids(messages) == [str(i) for i in ids]


async def _none_pending(ids: list[Any]) -> bool:
    return await OutboxEvent.filter(event_id__in=ids, sent_at=None).count() == 0


async def test_with_nats_stopped_changes_commit_and_are_delivered_once_it_returns(
        db, settings, test_type, tmp_path: Path):
    # given a relay running against our own NATS server
    server = EmbeddedNats(tmp_path / "nats", free_port())
    server.start()
    own = settings.model_copy(update={"nats_url": server.url})
    client = await connect_nats(own, name="relay-under-test")
    await ensure_streams(client.jetstream(), own)
    try:
        async with running(relay_loop(client, own)):
            before = await enqueue_many(test_type, 3)
            await eventually(lambda: _none_pending(before))
            # when NATS stops, state changes still commit and their events wait
            server.stop()
            during = await enqueue_many(test_type, 4)
            await asyncio.sleep(1.5)
            assert await OutboxEvent.filter(event_id__in=during, sent_at=None).count() == 4
            # and NATS comes back on the same port and storage
            server.start()
            await eventually(lambda: _none_pending(during), timeout_s=30)
        # then every event is in JetStream exactly once, in order
        messages = await read_subject(client.jetstream(), own, test_type, expect=7)
        assert event_ids(messages) == [str(i) for i in before + during]
        assert await OutboxEvent.filter(event_id__in=during, attempts__gte=1).count() == 4
    finally:
        await client.close()
        server.stop()


async def test_a_relay_that_lost_the_lock_publishes_nothing(nc: Client, settings, test_type):
    # given another relay (its own task, so its own connection) holding the lock in an open batch
    ids = await enqueue_many(test_type, 2)
    holding, release = asyncio.Event(), asyncio.Event()

    async def other_relay() -> None:
        async with in_transaction() as tx:
            assert await outbox.take_relay_lock(using=tx)
            holding.set()
            await release.wait()

    other = asyncio.create_task(other_relay())
    await holding.wait()
    # when this relay tries a batch
    published = await publish_pending(nc, settings)
    release.set()
    await other
    # then it stood aside, and publishes once the lock is free
    assert published == 0
    assert await OutboxEvent.filter(event_id__in=ids, sent_at=None).count() == 2
    await relay_until_empty(nc, settings)
    assert await OutboxEvent.filter(event_id__in=ids, sent_at=None).count() == 0


async def test_a_held_row_waits_for_its_time_and_can_be_withdrawn_until_then(nc: Client, settings, test_type):
    from tortoise import connections

    # given two events held back two seconds (written the way chat writes its push requests),
    # and one that is not
    held = [str(new_id()) for _ in range(2)]
    async with in_transaction() as tx:
        await tx.execute_query(
            f"WITH o AS ({outbox.insert_many_sql(type_param=1, ids_param=2, payloads_param=3, hold_param=4)}) "
            "SELECT 1", [test_type, held, ['{"n": 0}', '{"n": 1}'], 2.0])
        (now,) = [await outbox.enqueue(test_type, {"n": 2}, using=tx)]
    # when the relay publishes what is due (other tests' rows too, in this shared database)
    for _ in range(50):
        if await OutboxEvent.filter(event_id=now, sent_at__isnull=False).exists():
            break
        await publish_pending(nc, settings)
    # then only the one that is not held is published
    assert event_ids(await read_subject(nc.jetstream(), settings, test_type, expect=1, wait_s=1.0)) == [str(now)]
    # and one held row taken back before its time is never published, the other is after it
    assert await outbox.withdraw([UUID(held[0]), now], using=connections.get("default")) == 1  # not the sent one
    await relay_until_empty(nc, settings)  # which waits for the held one's time
    assert event_ids(await read_subject(nc.jetstream(), settings, test_type, expect=2, wait_s=1.0)) == [
        str(now), held[1]]
    assert not await OutboxEvent.filter(event_id=held[0]).exists()
