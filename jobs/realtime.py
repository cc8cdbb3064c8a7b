"""Realtime jobs: booking events become Pusher events on core NATS (`rt.<channel>`).

What is sent where is core/booking_broadcasts.py's decision; this worker only publishes it, as
the platform's realtime app (the first configured one), in the message shape every publisher
uses (core.realtime.fanout_message). Edge workers forward it to the sockets on those channels.
The publish is flushed before the job is acked, so a processed event has reached NATS; a crash
between the two re-sends it once, and clients can tell by the `event_id` in the data.
"""

from __future__ import annotations

import json
import logging

from core.booking_broadcasts import BROADCAST_EVENTS, booking_broadcasts
from core.events import realtime_subject
from core.realtime import fanout_message, parse_apps
from core.settings import Settings
from jobs.worker import Job, Poison, WorkerKind
from storage.bus import Bus

log = logging.getLogger("spotless.jobs.realtime")

NATS_WAIT_S = 5  # seconds; nats-py types flush timeouts as int


class RealtimeUnavailable(Exception):
    """NATS could not be reached to publish; the job is retried."""


async def publish_broadcasts(job: Job, bus: Bus, *, app_id: str) -> None:
    """The handler: publish every broadcast of one booking event, then flush."""
    try:
        broadcasts = booking_broadcasts(job.type, job.payload, event_id=job.event_id)
    except (ValueError, TypeError, AttributeError) as exc:
        raise Poison(f"bad booking payload: {exc}") from exc
    if not broadcasts:
        return
    if not await bus.wait_connected(NATS_WAIT_S) or bus.client is None:
        raise RealtimeUnavailable("NATS not connected")
    for broadcast in broadcasts:
        await bus.client.publish(
            realtime_subject(broadcast.channel),
            fanout_message(
                app_id=app_id,
                channel=broadcast.channel,
                event=broadcast.event,
                data=json.dumps(broadcast.data, separators=(",", ":")),
            ),
        )
    await bus.client.flush(timeout=NATS_WAIT_S)


def realtime_worker(settings: Settings) -> WorkerKind:
    app_id = parse_apps(settings.realtime_apps)[0].id
    bus = Bus(settings.nats_url or "nats://127.0.0.1:4222", name="spotless-realtime-worker")
    started = False

    async def handle(job: Job) -> None:
        nonlocal started
        if not started:  # the bus needs the running loop, which the factory may not have
            bus.start()
            started = True
        await publish_broadcasts(job, bus, app_id=app_id)

    return WorkerKind("realtime", dict.fromkeys(BROADCAST_EVENTS, handle), on_close=bus.close)
