"""The outbox relay: publishes committed outbox rows to JetStream in id order, then marks them sent.

One relay acts at a time: each batch runs in a transaction holding a PostgreSQL advisory
transaction lock (docs/decisions/0004-outbox-relay.md), so several relay processes never
interleave or reorder. Each message carries the row's event id as `Nats-Msg-Id`; a row published
again after a crash between publish and commit is dropped by JetStream's duplicate window.
While NATS is down the rows simply wait: nothing here blocks a state change.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from tortoise.transactions import in_transaction

from core.events import (
    CREATED_AT_HEADER,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    job_subject,
    jobs_stream,
)
from core.settings import Settings
from storage import outbox

log = logging.getLogger("spotless.jobs.relay")


class RelayUnavailable(Exception):
    """JetStream did not confirm a publish; the batch stopped at that row to keep the order."""


async def publish_pending(nc: Client, settings: Settings, *, publish_timeout_s: float = 2.0) -> int:
    """Publish one batch of pending rows; return how many were confirmed (0 if another relay is on)."""
    js = nc.jetstream(timeout=publish_timeout_s)
    stream = jobs_stream(settings.jetstream_prefix)
    failure: Exception | None = None
    async with in_transaction() as tx:
        if not await outbox.take_relay_lock(using=tx):
            return 0
        rows = await outbox.pending(limit=settings.relay_batch, using=tx)
        sent: list[int] = []
        for row in rows:
            try:
                await js.publish(
                    job_subject(row.type, prefix=settings.jetstream_prefix), row.payload_json,
                    stream=stream, timeout=publish_timeout_s,
                    headers={"Nats-Msg-Id": str(row.event_id), EVENT_ID_HEADER: str(row.event_id),
                             EVENT_TYPE_HEADER: row.type,
                             CREATED_AT_HEADER: f"{row.created_at_s:.6f}"},
                )
            except Exception as exc:  # nats-py raises timeouts, no-responders, connection errors
                failure = exc
                await outbox.record_failure(row.id, f"{type(exc).__name__}: {exc}", using=tx)
                break
            sent.append(row.id)
        if sent:
            await outbox.mark_sent(sent, using=tx)
    if failure is not None:
        raise RelayUnavailable(f"published {len(sent)} then failed: {failure!r}") from failure
    return len(sent)


async def relay_until_empty(nc: Client, settings: Settings) -> int:
    """Publish batches until nothing is pending (tests, the dev mailbox, benchmarks)."""
    total = 0
    while True:
        async with in_transaction() as tx:
            if await outbox.count_pending(using=tx) == 0:
                return total
        published = await publish_pending(nc, settings)
        if published == 0:
            await asyncio.sleep(settings.relay_poll_s)  # another relay holds the lock
        total += published


async def run_relay(nc: Client, settings: Settings, stop: asyncio.Event) -> None:
    """Relay until `stop` is set, polling when idle and backing off while NATS is away."""
    delay_s = settings.relay_poll_s
    while not stop.is_set():
        try:
            published = await publish_pending(nc, settings)
            delay_s = settings.relay_poll_s
            if published >= settings.relay_batch:
                continue  # more is waiting
        except RelayUnavailable as exc:
            log.warning("relay paused: %s", exc)
            delay_s = min(max(delay_s * 2, 0.2), 5.0)
        except Exception:  # the database went away, most likely; keep trying
            log.exception("relay batch failed")
            delay_s = min(max(delay_s * 2, 0.2), 5.0)
        try:
            await asyncio.wait_for(stop.wait(), delay_s)
        except TimeoutError:
            pass
