"""The last event of every cache channel, shared by all edge workers through JetStream.

Pusher's cache channels (`cache-`, `private-cache-`, `presence-cache-`, as Reverb has them)
remember their last event and send it to each new subscriber, or `pusher:cache_miss`. A worker
that publishes on one stores the event first, in a stream that keeps one message per subject (one
subject per app and channel) for `realtime_cache_ttl_s`; a worker whose socket subscribes reads
the channel's subject back. Any worker sees what any other published, whether or not it had
sockets on the channel then, and a restarted worker loses nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from core.events import realtime_cache_stream, realtime_cache_subject
from core.settings import Settings
from storage.bus import add_or_update_stream


class ChannelCache:
    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.jetstream_prefix
        self.stream = realtime_cache_stream(self.prefix)
        self.ttl_s = float(settings.realtime_cache_ttl_s)
        self._ensured_on: Client | None = None  # the connection on which the stream was ensured

    async def _js(self, client: Client) -> JetStreamContext:
        js = client.jetstream()
        if self._ensured_on is not client:
            await add_or_update_stream(js, StreamConfig(
                name=self.stream, subjects=[realtime_cache_subject("*", ">", prefix=self.prefix)],
                retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, max_msgs_per_subject=1,
                discard=DiscardPolicy.OLD, max_age=self.ttl_s, allow_direct=True))
            self._ensured_on = client
        return js

    @contextlib.asynccontextmanager
    async def _stream(self, client: Client) -> AsyncIterator[JetStreamContext]:
        """The JetStream context, the stream ensured; after a failure (a NATS server that lost its
        streams, say) the next call makes the stream again."""
        try:
            yield await self._js(client)
        except NotFoundError:
            raise
        except Exception:
            self._ensured_on = None
            raise

    async def remember(self, client: Client, *, app_id: str, channel: str, message: bytes) -> None:
        """Keep `message` (a fan-out message body) as the channel's last event; returns once stored."""
        async with self._stream(client) as js:
            await js.publish(realtime_cache_subject(app_id, channel, prefix=self.prefix),
                             message, stream=self.stream)

    async def last(self, client: Client, *, app_id: str, channel: str) -> bytes | None:
        """The channel's last event as stored by `remember`, or None (none yet, or expired)."""
        try:
            async with self._stream(client) as js:
                found = await js.get_last_msg(self.stream, realtime_cache_subject(
                    app_id, channel, prefix=self.prefix), direct=True)
        except NotFoundError:
            return None
        data: bytes | None = found.data
        return data
