"""The worker framework against real JetStream and PostgreSQL: effects, retries, dead letters,
idempotency, shutdown and crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from uuid import uuid4

from nats.aio.client import Client
from tortoise.transactions import in_transaction

from core.events import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    consumer_name,
    dead_letter_stream,
    dead_letter_subject,
    job_subject,
    jobs_stream,
)
from jobs.relay import relay_until_empty
from jobs.worker import Job, Poison, Worker, WorkerKind, backoff_s
from storage import outbox
from storage.models import FailedJob, ProcessedEvent
from tests.jobs.conftest import eventually, relay_loop, running, worker_loop
from tests.stack import ROOT


async def enqueue(event_type: str, payload: dict) -> str:
    async with in_transaction() as tx:
        return str(await outbox.enqueue(event_type, payload, using=tx))


async def test_an_event_travels_outbox_relay_worker_to_its_effect(nc: Client, settings, kind, test_type):
    # given a worker whose handler records what it saw, and the relay
    seen: list[Job] = []

    async def record(job: Job) -> None:
        seen.append(job)

    spec = WorkerKind(kind, {test_type: record})
    async with running(relay_loop(nc, settings), worker_loop(nc, settings, spec)):
        # when a transaction commits an event
        event_id = await enqueue(test_type, {"cleaning": "kitchen"})
        # then the handler runs once with it, and the event is recorded as processed
        await eventually(lambda: len(seen) == 1)
    assert str(seen[0].event_id) == event_id
    assert (seen[0].type, seen[0].payload, seen[0].deliveries) == (test_type, {"cleaning": "kitchen"}, 1)
    assert await ProcessedEvent.filter(event_id=event_id).count() == 1


async def test_a_failing_job_is_retried_with_growing_delays_then_dead_lettered(
        nc: Client, settings, kind, test_type):
    # given a handler that always fails, three deliveries allowed, backoff from 0.3 s
    quick = settings.model_copy(update={"job_max_deliveries": 3, "job_backoff_base_s": 0.3})
    attempts: list[float] = []

    async def broken(job: Job) -> None:
        attempts.append(time.monotonic())
        raise RuntimeError(f"payment provider down (attempt {job.deliveries})")

    spec = WorkerKind(kind, {test_type: broken})
    async with running(worker_loop(nc, quick, spec)):
        # when its event arrives
        event_id = await enqueue(test_type, {"invoice": 7})
        await relay_until_empty(nc, quick)
        await eventually(lambda: FailedJob.filter(event_id=event_id).exists())
        await asyncio.sleep(1.0)  # nothing more may happen after the dead letter
    # then it ran three times, each wait longer than the one before
    assert len(attempts) == 3
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= backoff_s(1, quick) - 0.05 and gaps[1] >= backoff_s(2, quick) - 0.05
    assert backoff_s(2, quick) > backoff_s(1, quick)
    # and it was moved to the failed_jobs table and the dead-letter subject with the last error
    failed = await FailedJob.get(event_id=event_id)
    assert (failed.type, failed.payload, failed.deliveries) == (test_type, {"invoice": 7}, 3)
    assert failed.error == "RuntimeError: payment provider down (attempt 3)"
    js = nc.jetstream()
    dead = await js.get_last_msg(dead_letter_stream(settings.jetstream_prefix),
                                 dead_letter_subject(test_type, prefix=settings.jetstream_prefix, consumer=kind))
    assert dead.headers[EVENT_ID_HEADER] == event_id and dead.data == b'{"invoice": 7}'
    assert not await ProcessedEvent.filter(event_id=event_id).exists()


async def test_a_poison_job_is_dead_lettered_without_retries(nc: Client, settings, kind, test_type):
    # given a handler that refuses its input as hopeless
    attempts: list[int] = []

    async def refuse(job: Job) -> None:
        attempts.append(job.deliveries)
        raise Poison("the photo is not an image")

    async with running(worker_loop(nc, settings, WorkerKind(kind, {test_type: refuse}))):
        event_id = await enqueue(test_type, {})
        await relay_until_empty(nc, settings)
        await eventually(lambda: FailedJob.filter(event_id=event_id).exists())
        await asyncio.sleep(0.5)
    assert attempts == [1]
    assert (await FailedJob.get(event_id=event_id)).error == "Poison: the photo is not an image"


async def test_a_redelivered_event_has_no_second_effect(nc: Client, settings, kind, test_type):
    # given an event already handled
    effects: list[str] = []

    async def count(job: Job) -> None:
        effects.append(str(job.event_id))

    spec = WorkerKind(kind, {test_type: count})
    event_id = await enqueue(test_type, {"push": "hello"})
    await relay_until_empty(nc, settings)
    await Worker(nc, settings, spec).run(asyncio.Event(), until_idle_s=0.5)
    assert effects == [event_id]
    # when the same event arrives again (as a relay re-publishing after the duplicate window would)
    await nc.jetstream().publish(
        job_subject(test_type, prefix=settings.jetstream_prefix), b'{"push": "hello"}',
        headers={"Nats-Msg-Id": str(uuid4()), EVENT_ID_HEADER: event_id, EVENT_TYPE_HEADER: test_type})
    await Worker(nc, settings, spec).run(asyncio.Event(), until_idle_s=0.5)
    # then the handler did not run again, and the copy was acked
    assert effects == [event_id]
    info = await nc.jetstream().consumer_info(jobs_stream(settings.jetstream_prefix),
                                              consumer_name(settings.jetstream_prefix, kind, test_type))
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_shutdown_finishes_jobs_in_hand(nc: Client, settings, kind, test_type):
    # given a worker busy with a job that takes a moment
    started, finished = asyncio.Event(), []

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(job.event_id)

    async with running(worker_loop(nc, settings, WorkerKind(kind, {test_type: slow}))):
        event_id = await enqueue(test_type, {})
        await relay_until_empty(nc, settings)
        await started.wait()
        # when it is told to stop (leaving the block sets stop and waits)
    # then the job finished and was recorded before the worker returned
    assert [str(e) for e in finished] == [event_id]
    assert await ProcessedEvent.filter(event_id=event_id).exists()


async def test_shutdown_hands_back_a_job_that_outlasts_the_grace_period(nc: Client, settings, kind, test_type):
    # given a worker with a short grace period, busy with a job that takes long
    impatient = settings.model_copy(update={"job_shutdown_grace_s": 0.2})
    started = asyncio.Event()
    runs: list[int] = []

    async def long(job: Job) -> None:
        runs.append(job.deliveries)
        started.set()
        await asyncio.sleep(30)

    async with running(worker_loop(nc, impatient, WorkerKind(kind, {test_type: long}))):
        await enqueue(test_type, {})
        await relay_until_empty(nc, impatient)
        await started.wait()
    # when another worker starts right after, then it gets the job at once (no ack_wait to sit out)
    redone: list[int] = []

    async def quick(job: Job) -> None:
        redone.append(job.deliveries)

    began = time.monotonic()
    await Worker(nc, impatient, WorkerKind(kind, {test_type: quick})).run(asyncio.Event(), until_idle_s=2)
    assert runs == [1] and redone == [2]
    assert time.monotonic() - began < settings.job_ack_wait_s


async def test_a_worker_killed_mid_job_leaves_the_job_to_be_redone(
        nc: Client, services, settings, kind, test_type, tmp_path: Path):
    # given a worker process (2 s ack wait) that has taken a job and is in the middle of it
    short = settings.model_copy(update={"job_ack_wait_s": 2.0})
    marker = tmp_path / "started"
    env = {**os.environ, **services, "SPOTLESS_JOB_ACK_WAIT_S": "2"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.jobs.sleepy_worker", kind, test_type, str(marker), cwd=ROOT, env=env)
    try:
        event_id = await enqueue(test_type, {"clean": "windows"})
        await relay_until_empty(nc, short)
        await eventually(marker.exists, timeout_s=30)
        # when it is killed without a chance to ack or hand back
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # then another worker does the job, as its second delivery
    done: list[Job] = []

    async def finish(job: Job) -> None:
        done.append(job)

    async with running(worker_loop(nc, short, WorkerKind(kind, {test_type: finish}))):
        await eventually(lambda: len(done) == 1, timeout_s=15)
    assert str(done[0].event_id) == event_id and done[0].deliveries == 2
    assert await ProcessedEvent.filter(event_id=event_id).count() == 1
