"""The worker framework: durable pull consumers per worker kind, handlers keyed by event type.

A job is acked after its handler succeeds and its event id is recorded as processed, so a
redelivered event is skipped. A failing handler is retried with a growing delay (`nak(delay)`);
`Poison` or the last allowed delivery moves the job to the dead-letter subject and the
`failed_jobs` table and terminates it. On shutdown, jobs in hand get `job_shutdown_grace_s` to
finish; the rest are handed back (`nak`) for another worker. A worker that dies without either
leaves its jobs unacked, and JetStream redelivers them after `job_ack_wait_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from core.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, dead_letter_subject, jobs_stream
from core.settings import Settings
from jobs.streams import ensure_consumer
from storage import jobs as job_store

log = logging.getLogger("spotless.jobs.worker")


class Poison(Exception):
    """The job can never succeed (bad payload, refused input): dead-letter it now."""


@dataclass(frozen=True)
class Job:
    event_id: UUID
    type: str
    payload: dict[str, Any]
    deliveries: int  # 1 on the first attempt


Handler = Callable[[Job], Awaitable[None]]


@dataclass(frozen=True)
class WorkerKind:
    """What one kind of worker consumes: its name (consumers, idempotency keys) and a handler per type."""

    kind: str
    handlers: Mapping[str, Handler]
    on_close: Callable[[], Awaitable[None]] | None = None  # releases clients the handlers hold


def backoff_s(deliveries: int, settings: Settings) -> float:
    """Delay before the next attempt after `deliveries` failed ones: doubling, capped."""
    return min(settings.job_backoff_base_s * 2 ** max(deliveries - 1, 0), settings.job_backoff_max_s)


class Worker:
    """Runs one `WorkerKind`: a pull loop per event type, sharing `job_concurrency` slots."""

    def __init__(self, nc: Client, settings: Settings, spec: WorkerKind) -> None:
        self.nc = nc
        self.settings = settings
        self.spec = spec
        self.js = nc.jetstream()
        self._subs: list[JetStreamContext.PullSubscription] = []
        self._inflight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for event_type in self.spec.handlers:
            durable = await ensure_consumer(self.js, self.settings, kind=self.spec.kind, event_type=event_type)
            self._subs.append(await self.js.pull_subscribe_bind(
                durable=durable, stream=jobs_stream(self.settings.jetstream_prefix)))

    async def run(self, stop: asyncio.Event, *, until_idle_s: float | None = None) -> None:
        """Take jobs until `stop` is set (or, with `until_idle_s`, until none came for that long and
        none is waiting to be delivered)."""
        if not self._subs:
            await self.start()
        try:
            await asyncio.gather(*(self._pull(sub, stop, until_idle_s) for sub in self._subs))
        finally:
            await self._drain()
            if self.spec.on_close is not None:
                await self.spec.on_close()

    async def _pull(self, sub: JetStreamContext.PullSubscription, stop: asyncio.Event,
                    until_idle_s: float | None) -> None:
        while not stop.is_set():
            room = self.settings.job_concurrency - len(self._inflight)
            if room <= 0:
                await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await sub.fetch(room, timeout=until_idle_s or 1.0)
            except (TimeoutError, NatsTimeoutError):
                if until_idle_s is not None and not self._inflight and not await _undelivered(sub):
                    return
                continue
            except Exception as exc:  # NATS away: wait for the client to reconnect
                log.warning("fetch failed for %s: %r", self.spec.kind, exc)
                await asyncio.sleep(1.0)
                continue
            for msg in messages:
                task = asyncio.create_task(self.handle(msg))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _drain(self) -> None:
        if not self._inflight:
            return
        _, late = await asyncio.wait(set(self._inflight), timeout=self.settings.job_shutdown_grace_s)
        for task in late:
            task.cancel()  # handle() hands the job back on cancellation
        if late:
            await asyncio.wait(late)

    async def handle(self, msg: Msg) -> None:
        """Run one delivered message through its handler and settle it (ack, nak or term)."""
        try:
            await self._handle(msg)
        except asyncio.CancelledError:
            raise
        except Exception:  # database or NATS gone mid-way: unsettled, so redelivered after ack_wait
            log.exception("could not handle a message on %s", msg.subject)

    async def _handle(self, msg: Msg) -> None:
        headers = msg.headers or {}
        event_type = headers.get(EVENT_TYPE_HEADER, msg.subject.split(".", 2)[-1])
        deliveries = msg.metadata.num_delivered
        try:
            event_id = UUID(headers[EVENT_ID_HEADER])
        except (KeyError, ValueError):
            log.error("message on %s without an event id; terminated", msg.subject)
            await msg.term()
            return
        if await job_store.already_processed(self.spec.kind, event_id):
            await msg.ack()
            return
        try:
            payload = json.loads(msg.data)
            handler = self.spec.handlers.get(event_type)
            if handler is None:
                raise Poison(f"{self.spec.kind} has no handler for {event_type}")
            if deliveries > self.settings.job_max_deliveries:
                raise Poison(f"delivered {deliveries} times without an outcome (worker died mid-job?)")
            await handler(Job(event_id, event_type, payload, deliveries))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(msg.nak())  # hand it back for another worker, now
            raise
        except Exception as exc:
            try:
                await self._failed(msg, exc, event_id=event_id, event_type=event_type,
                                   deliveries=deliveries)
            except Exception:  # unsettled: JetStream redelivers it after ack_wait
                log.exception("could not settle failed %s %s", event_type, event_id)
            return
        try:
            await job_store.mark_processed(self.spec.kind, event_id)
            await msg.ack()
        except Exception:  # the effect happened; a redelivery is skipped once the key is written
            log.exception("could not ack %s %s", event_type, event_id)

    async def _failed(self, msg: Msg, exc: Exception, *, event_id: UUID, event_type: str,
                      deliveries: int) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, Poison) and deliveries < self.settings.job_max_deliveries:
            delay = backoff_s(deliveries, self.settings)
            log.warning("%s failed on delivery %d (%s); retrying in %.1f s",
                        event_type, deliveries, error, delay)
            await msg.nak(delay=delay)
            return
        log.error("%s %s dead-lettered after %d deliveries: %s", event_type, event_id, deliveries, error)
        try:
            payload: Any = json.loads(msg.data)
        except ValueError:
            payload = {"raw": msg.data.decode(errors="replace")}
        await job_store.record_failed_job(consumer=self.spec.kind, event_id=event_id,
                                          event_type=event_type, payload=payload, error=error,
                                          deliveries=deliveries)
        await self.js.publish(
            dead_letter_subject(event_type, prefix=self.settings.jetstream_prefix, consumer=self.spec.kind),
            msg.data, headers={**{k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")},
                               "Nats-Msg-Id": f"{self.spec.kind}:{event_id}",
                               "Spotless-Error": error[:1000],
                               "Spotless-Deliveries": str(deliveries)},
        )
        await msg.term()


async def _undelivered(sub: JetStreamContext.PullSubscription) -> bool:
    """Whether the stream holds jobs for `sub` not yet delivered: a worker run `until_idle_s`
    is not idle while a job is on its way (delivery can take longer than the idle time on a
    loaded machine). Redeliveries waiting out their back-off do not count."""
    try:
        return ((await sub.consumer_info()).num_pending or 0) > 0
    except Exception:  # NATS away: nothing to say; idle as before
        return False
