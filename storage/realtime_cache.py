"""The last event of every cache channel, shared by all edge workers through JetStream.

Pusher's cache channels (`cache-`, `private-cache-`, `presence-cache-`, as Reverb has them)
remember their last event and send it to each new subscriber, or `pusher:cache_miss`. A worker
that publishes on one stores the event first, in a stream that keeps one message per subject (one
subject per app and channel) for `realtime_cache_ttl_s`; a worker whose socket subscribes reads
the channel's subject back. Any worker sees what any other published, whether or not it had
sockets on the channel then, and a restarted worker loses nothing.
"""

from __future__ import annotations

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

    async def remember(self, client: Client, *, app_id: str, channel: str, message: bytes) -> None:
        """Keep `message` (a fan-out message body) as the channel's last event; returns once stored."""
        try:
            js = await self._js(client)
            await js.publish(realtime_cache_subject(app_id, channel, prefix=self.prefix),
                             message, stream=self.stream)
        except Exception:
            self._ensured_on = None  # a NATS server that lost its streams: make it again next time
            raise

    async def last(self, client: Client, *, app_id: str, channel: str) -> bytes | None:
        """The channel's last event as stored by `remember`, or None (none yet, or expired)."""
        try:
            js = await self._js(client)
            found = await js.get_last_msg(self.stream, realtime_cache_subject(
                app_id, channel, prefix=self.prefix), direct=True)
        except NotFoundError:
            return None
        except Exception:
            self._ensured_on = None
            raise
        data: bytes | None = found.data
        return data
