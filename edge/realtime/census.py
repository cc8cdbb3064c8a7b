"""How many sockets each channel has across every edge worker: the scatter-gather behind Pusher's
channel query API (edge/realtime/channels_api.py). Never on a message's path.

Every worker of the deployment (its Ray namespace: others sharing the NATS server ignore the
query, as they ignore each other's layout notes) answers `sys.channels.query` with its own
counts (`Hub.occupied`), in parts of at most `CHANNELS_PER_PART` channels so that no reply
outgrows a NATS message, each part naming the worker by the id it heartbeats the presence-channel
shards with. The asking worker publishes one request with a reply inbox and meanwhile asks the
shards which workers are alive (heard within three heartbeats); it answers once each of those,
itself included, has sent all its parts, or at `realtime_channel_query_timeout_s` with every
answer it has (a worker too new for the shards to know counts too). A worker that died stays
alive to the shards for up to three heartbeats: meanwhile queries take the whole timeout and
leave it out, which is right, since its sockets died with it. One that is merely slow is left
out too, and logged. Shards that cannot say who is alive in time make the query wait the whole
timeout. NATS away: Unavailable(nats). A query never waits longer than the timeout.

User counts and member lists come from the presence-channel shards, which hold the members
that subscribers are shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from core.channel_queries import PRESENCE_PREFIX, InfoAttribute, channel_info, merge_counts
from core.errors import Unavailable
from core.events import CHANNELS_QUERY_SUBJECT
from core.settings import Settings
from edge.realtime.hub import Hub
from edge.realtime.presence import PresenceRegistry

log = logging.getLogger("spotless.realtime")

CHANNELS_PER_PART = 2000  # names of at most 164 characters: a part stays far below NATS's 1 MB
T = TypeVar("T")


class Census:
    def __init__(self, hub: Hub, presence: PresenceRegistry, settings: Settings) -> None:
        self.hub = hub
        self.presence = presence
        self.namespace = settings.ray_namespace  # the deployment, as the shards know it
        self.timeout_s = settings.realtime_channel_query_timeout_s
        self._listening: asyncio.Task[None] | None = None

    # --- answering other workers' queries ---

    def start(self) -> None:
        """Answer queries once NATS is reachable (nats-py keeps the subscription over reconnects)."""
        self._listening = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        while not await self.hub.bus.wait_connected(5.0):
            pass
        assert self.hub.bus.client is not None
        await self.hub.bus.client.subscribe(CHANNELS_QUERY_SUBJECT, cb=self._answer)

    async def stop(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listening

    async def _answer(self, msg: Msg) -> None:
        try:
            query = json.loads(msg.data)
            if query.get("namespace") != self.namespace:
                return  # another deployment sharing the NATS server
            app_id, prefix, channels = str(query["app_id"]), str(query.get("prefix") or ""), query.get("channels")
            if channels is not None:
                channels = [str(channel) for channel in channels]
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("dropping a malformed channel query")
            return
        client = self.hub.bus.client
        if not msg.reply or client is None:
            return
        counts = list(self.hub.occupied(app_id, channels=channels, prefix=prefix).items())
        parts = [counts[start:start + CHANNELS_PER_PART] for start in range(0, len(counts), CHANNELS_PER_PART)]
        try:
            for number, part in enumerate(parts or [[]]):
                await client.publish(msg.reply, json.dumps({
                    "worker": self.presence.worker_id, "part": number, "parts": max(1, len(parts)),
                    "channels": dict(part)}, separators=(",", ":")).encode())
        except (NatsError, OSError):
            log.warning("could not answer a channel query", exc_info=True)

    # --- asking every worker ---

    async def counts(self, app_id: str, *, channels: list[str] | None = None, prefix: str = "") -> dict[str, int]:
        """Sockets per occupied channel of the app, on every live worker: of `channels` if
        given, else of every channel whose name starts with `prefix`."""
        client = self.hub.bus.client
        if client is None or not self.hub.bus.connected:
            raise Unavailable(dependency="nats")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        parts: dict[str, dict[int, dict[str, int]]] = {}  # worker -> part number -> its counts
        sizes: dict[str, int] = {}  # worker -> how many parts it sends
        alive: set[str] = set()  # the workers to wait for
        known = asyncio.Event()  # `alive` is set
        done = asyncio.Event()

        def answered(worker: str) -> bool:
            return worker in sizes and len(parts[worker]) >= sizes[worker]

        async def heard(msg: Msg) -> None:
            try:
                reply = json.loads(msg.data)
                worker, number, size = str(reply["worker"]), int(reply["part"]), int(reply["parts"])
                counts = {str(channel): int(count) for channel, count in reply["channels"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("dropping a malformed channel query answer")
                return
            parts.setdefault(worker, {})[number] = counts
            sizes[worker] = size
            if known.is_set() and all(answered(w) for w in alive):
                done.set()

        query = {"namespace": self.namespace, "app_id": app_id,
                 **({"prefix": prefix} if channels is None else {"channels": channels})}
        try:
            inbox = client.new_inbox()
            subscription = await client.subscribe(inbox, cb=heard)
        except (NatsError, OSError) as exc:
            raise Unavailable(dependency="nats") from exc
        try:
            try:
                await client.publish(CHANNELS_QUERY_SUBJECT, json.dumps(query).encode(), reply=inbox)
            except (NatsError, OSError) as exc:
                raise Unavailable(dependency="nats") from exc
            try:
                alive = await self._from_shards(self.presence.shards.live_workers(), deadline)
            except Unavailable:
                log.warning("the presence-channel shards did not say which edge workers are alive; "
                            "a channel query waits %ss for every answer", self.timeout_s)
            else:
                alive.add(self.presence.worker_id)
                known.set()
                if all(answered(w) for w in alive):
                    done.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(0.0, deadline - loop.time()))
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        missing = sorted(w for w in alive if not answered(w))
        if missing:
            log.warning("channel query answered without %d edge worker(s) silent for %ss: %s",
                        len(missing), self.timeout_s, ", ".join(missing))
        return merge_counts(report for reports in parts.values() for report in reports.values())

    async def describe(self, app_id: str, info: frozenset[InfoAttribute], *,
                       channels: list[str] | None = None, prefix: str = "") -> dict[str, dict[str, int]]:
        """Each channel with the attributes asked: `channels` if given (occupied or not), else
        the occupied channels whose names start with `prefix`."""
        counts = await self.counts(app_id, channels=channels, prefix=prefix)
        listed = sorted(counts) if channels is None else list(dict.fromkeys(channels))
        presence = [channel for channel in listed if channel.startswith(PRESENCE_PREFIX)]
        users = await self.user_counts(app_id, presence) if InfoAttribute.USER_COUNT in info else {}
        return {channel: channel_info(info, channel, subscriptions=counts.get(channel, 0), users=users)
                for channel in listed}

    # --- presence members, from the shards ---

    async def user_counts(self, app_id: str, channels: list[str]) -> dict[str, int]:
        """Distinct users per presence channel."""
        if not channels:
            return {}
        loop = asyncio.get_running_loop()
        return await self._from_shards(self.presence.shards.member_counts(app_id, channels),
                                       loop.time() + self.timeout_s)

    async def users(self, app_id: str, channel: str) -> list[str]:
        """The ids of a presence channel's users."""
        loop = asyncio.get_running_loop()
        members: dict[str, Any] = await self._from_shards(
            self.presence.shards.call(app_id, channel, "members", app_id, channel), loop.time() + self.timeout_s)
        return sorted(members)

    async def _from_shards(self, call: Awaitable[T], deadline: float) -> T:
        try:
            return await asyncio.wait_for(call, max(0.0, deadline - asyncio.get_running_loop().time()))
        except Unavailable:
            raise
        except TimeoutError:
            raise Unavailable("the presence-channel shards did not answer in time; try again",
                              dependency="actors", retry_after_s=2) from None
        except Exception as exc:  # Ray raises several types for an unreachable actor
            raise Unavailable("the presence-channel shards are not reachable; try again",
                              dependency="actors", retry_after_s=2) from exc
