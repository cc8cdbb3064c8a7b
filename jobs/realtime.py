"""Realtime jobs: booking events become Pusher events on core NATS (`rt.<channel>`), and revoked
tokens become `sys.sockets.revoked`, on which every edge worker closes the sockets they authorised.

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
from core.events import SOCKETS_REVOKED_SUBJECT, EventType, realtime_subject
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


async def publish_revocation(job: Job, bus: Bus) -> None:
    """The handler of `account.access_revoked`: tell every edge worker, then flush."""
    payload = job.payload
    token_ids = payload.get("token_ids") if isinstance(payload, dict) else None
    if not isinstance(token_ids, list) or not all(isinstance(t, int) for t in token_ids):
        raise Poison("an access_revoked event without a list of token ids")
    if not await bus.wait_connected(NATS_WAIT_S) or bus.client is None:
        raise RealtimeUnavailable("NATS not connected")
    await bus.client.publish(SOCKETS_REVOKED_SUBJECT, json.dumps({
        "user_id": payload.get("user_id"), "token_ids": token_ids,
        "reason": str(payload.get("reason") or "revoked"), "at": payload.get("at")}).encode())
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
        if job.type == EventType.ACCESS_REVOKED:
            await publish_revocation(job, bus)
        else:
            await publish_broadcasts(job, bus, app_id=app_id)

    return WorkerKind("realtime", {**dict.fromkeys(BROADCAST_EVENTS, handle), EventType.ACCESS_REVOKED: handle},
                      on_close=bus.close)
