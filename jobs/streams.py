"""Creating (or updating) the JetStream streams and durable pull consumers, idempotently.

Every process that publishes or consumes calls these at start; running them twice, or from
several processes at once, changes nothing.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from core.events import (
    DEAD_SUBJECT_PREFIX,
    JOBS_SUBJECT_PREFIX,
    consumer_name,
    dead_letter_stream,
    job_subject,
    jobs_stream,
)
from core.settings import Settings
from storage.bus import add_or_update_stream


async def ensure_streams(js: JetStreamContext, settings: Settings) -> None:
    """The jobs stream (every outbox event) and the dead-letter stream."""
    prefix = settings.jetstream_prefix
    await add_or_update_stream(js, StreamConfig(
        name=jobs_stream(prefix), subjects=[f"{prefix}.{JOBS_SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        max_age=float(settings.jobs_stream_max_age_s),
        duplicate_window=float(settings.jobs_duplicate_window_s),
    ))
    await add_or_update_stream(js, StreamConfig(
        name=dead_letter_stream(prefix), subjects=[f"{prefix}.{DEAD_SUBJECT_PREFIX}.>"],
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE,
        max_age=float(settings.jobs_stream_max_age_s) * 4,
    ))


async def ensure_consumer(js: JetStreamContext, settings: Settings, *, kind: str, event_type: str) -> str:
    """The durable pull consumer of worker `kind` for `event_type`; returns its name.

    Redelivery limits are enforced by the worker (it dead-letters on the last delivery), so the
    server's max_deliver stays unlimited and a job is never dropped silently.
    """
    prefix = settings.jetstream_prefix
    durable = consumer_name(prefix, kind, event_type)
    await js.add_consumer(jobs_stream(prefix), ConsumerConfig(
        name=durable,
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=float(settings.job_ack_wait_s),
        max_deliver=-1,
        max_ack_pending=max(1000, settings.job_concurrency * 4),
        filter_subject=job_subject(event_type, prefix=prefix),
    ))
    return durable
