"""The cache channels' store on the real NATS JetStream: the last event per app and channel, for
a time to live, shared by every connection."""

from __future__ import annotations

import asyncio
import secrets

import nats
import pytest

from core.events import realtime_cache_stream
from core.settings import Settings
from storage.realtime_cache import ChannelCache


async def test_the_last_event_per_app_and_channel_is_kept_for_its_time_to_live(settings: Settings):
    own = settings.model_copy(update={"jetstream_prefix": f"t{secrets.token_hex(4)}", "realtime_cache_ttl_s": 1})
    writer, reader = await nats.connect(settings.nats_url), await nats.connect(settings.nats_url)
    try:
        cache, other = ChannelCache(own), ChannelCache(own)  # as two edge workers hold them
        assert await other.last(reader, app_id="1", channel="cache-a") is None
        # when two events are kept on one channel and one on another app's channel of that name
        await cache.remember(writer, app_id="1", channel="cache-a", message=b"first")
        await cache.remember(writer, app_id="1", channel="cache-a", message=b"second")
        await cache.remember(writer, app_id="2", channel="cache-a", message=b"other app")
        # then the other connection reads the last of each, and nothing for a channel never used
        assert await other.last(reader, app_id="1", channel="cache-a") == b"second"
        assert await other.last(reader, app_id="2", channel="cache-a") == b"other app"
        assert await other.last(reader, app_id="1", channel="cache-b.x") is None
        # and the stream holds one message per channel, not every event
        info = await reader.jetstream().stream_info(realtime_cache_stream(own.jetstream_prefix))
        assert info.state.messages == 2
        # and once the time to live has passed, nothing is left to send
        await asyncio.sleep(2.5)
        assert await other.last(reader, app_id="1", channel="cache-a") is None
        # and a new time to live is applied to the existing stream by the next process to start
        longer = ChannelCache(own.model_copy(update={"realtime_cache_ttl_s": 60}))
        await longer.remember(writer, app_id="1", channel="cache-a", message=b"third")
        info = await reader.jetstream().stream_info(realtime_cache_stream(own.jetstream_prefix))
        assert info.config.max_age == 60
        # and a NATS server that lost the stream costs one failed call: the next makes it again
        await reader.jetstream().delete_stream(realtime_cache_stream(own.jetstream_prefix))
        with pytest.raises(nats.errors.Error):
            await longer.remember(writer, app_id="1", channel="cache-a", message=b"lost")
        await longer.remember(writer, app_id="1", channel="cache-a", message=b"fourth")
        assert await longer.last(reader, app_id="1", channel="cache-a") == b"fourth"
    finally:
        await writer.jetstream().delete_stream(realtime_cache_stream(own.jetstream_prefix))
        await writer.close()
        await reader.close()
