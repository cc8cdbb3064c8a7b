"""PresenceShard: which cleaners are online, with a heartbeat deadline and a last location.

Cleaners map to shards by rendezvous hashing (`core.sharding.shard_of_cleaner`). A cleaner is
online while now < last heartbeat + `presence_timeout_s`; nobody has to mark them offline.

This shard is also the one place that decides a cleaner came online or went offline: every
`presence_notify_s` it takes the cleaners that came online, timed out or moved since the last
round, loads their watchers (clients with an accepted or running booking with them) in one
query, and publishes `cleaner.presence` to those clients' `private-user.{id}` channels on core
NATS (who hears what: core/cleaner_presence.py). Heartbeats themselves stay one coalesced Ray
call and no query; clients learn of a change within a notify round.

Postgres is the truth for "last seen": heartbeats mark the cleaner dirty and a background loop
writes every dirty cleaner in one statement each `presence_flush_s`, so a heartbeat costs no
database round trip. A shard that starts (or restarts) loads, in one query, the cleaners seen
within the timeout and keeps them online until their deadline. Losing the last few seconds of
heartbeats on a crash is acceptable: the app heartbeats again well within the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import ray

from actors.layout import MOVED
from actors.runtime import shard_name, shard_options, shard_process_started
from actors.status import process_facts
from core.cleaner_presence import WATCHING_STATES, Watcher, presence_broadcasts
from core.events import RealtimeEvent, realtime_subject
from core.realtime import fanout_message, parse_apps
from core.settings import Settings
from core.sharding import shard_of_cleaner
from storage.bus import Bus
from storage.db import asyncpg_dsn, keep_session
from storage.shard_layout import counts_in_force

log = logging.getLogger("spotless.actors.presence")

# Only cleaners with a profile have a presence row; the join skips anyone else.
_FLUSH_SQL = """
INSERT INTO cleaner_presence (cleaner_id, last_seen_at, lat, lng)
SELECT u.id, u.seen, u.lat, u.lng
FROM unnest($1::uuid[], $2::timestamptz[], $3::float8[], $4::float8[]) AS u(id, seen, lat, lng)
JOIN cleaner_profiles p ON p.user_id = u.id
ON CONFLICT (cleaner_id) DO UPDATE
SET last_seen_at = GREATEST(cleaner_presence.last_seen_at, EXCLUDED.last_seen_at),
    lat = EXCLUDED.lat, lng = EXCLUDED.lng
"""

_WATCHERS_SQL = """
SELECT cleaner_id::text, client_id::text, id::text, state FROM bookings
WHERE cleaner_id = ANY($1::uuid[]) AND state = ANY($2::text[])
"""


@ray.remote
class PresenceShard:
    def __init__(self, settings: Settings, shard: int, shard_count: int, prefix: str | None = None) -> None:
        shard_process_started()
        self.settings = settings
        self.shard = shard
        self.shard_count = shard_count
        self.prefix = prefix or settings.presence_shard_prefix
        self.timeout_s = settings.presence_timeout_s
        self.seen: dict[str, tuple[float, float | None, float | None]] = {}  # id -> (unix time, lat, lng)
        self.dirty: set[str] = set()
        self.pool: asyncpg.Pool | None = None
        self.loaded = False
        self.load_lock: asyncio.Lock | None = None
        self.flusher: asyncio.Task[None] | None = None
        self.app_id = parse_apps(settings.realtime_apps)[0].id
        self.announced: set[str] = set()  # cleaners whose watchers were told they are online
        self.moved: set[str] = set()  # cleaners heard from since the last notify round
        self.bus: Bus | None = None
        self.notifier: asyncio.Task[None] | None = None
        self.notified = 0  # cleaner.presence events published (observability, tests)
        self.retired = False  # after a rebalance: every call answers MOVED (actors/layout.py)

    async def _ensure_loaded(self) -> None:
        if self.loaded:
            return
        if self.load_lock is None:
            self.load_lock = asyncio.Lock()
        async with self.load_lock:
            if self.loaded:
                return
            self.pool = await asyncpg.create_pool(asyncpg_dsn(self.settings.database_url),
                                                  min_size=1, max_size=2, reset=keep_session)
            counts = await counts_in_force(self.pool, "presence", self.prefix)
            if counts is not None and self.shard_count not in counts:
                # Made by a process with a stale layout: serve nothing, announce nothing.
                log.warning("presence shard %d of %d is not in the layout (%s); retired",
                            self.shard, self.shard_count, sorted(counts))
                self.retired = self.loaded = True
                return
            rows = await self.pool.fetch(
                "SELECT cleaner_id::text, last_seen_at, lat, lng FROM cleaner_presence "
                "WHERE last_seen_at > now() - make_interval(secs => $1)", self.timeout_s)
            for cid, seen_at, lat, lng in rows:
                if shard_of_cleaner(cid, self.shard_count) == self.shard:
                    self.seen[cid] = (seen_at.timestamp(), lat, lng)
            # Online before a restart means already announced; only their timeout is news.
            self.announced = set(self.seen)
            self.bus = Bus(self.settings.nats_url or "nats://127.0.0.1:4222",
                           name=f"spotless-presence-{self.shard}")
            self.bus.start()
            loop = asyncio.get_running_loop()
            self.flusher = loop.create_task(self._flush_forever())
            self.notifier = loop.create_task(self._notify_forever())
            self.loaded = True

    async def heartbeat(self, beats: list[tuple[str, float, float]]) -> int | str:
        """Record (cleaner_id, lat, lng) heartbeats; returns how many cleaners are online here
        (MOVED once retired)."""
        await self._ensure_loaded()
        if self.retired:  # checked after the await: what follows runs without yielding
            return MOVED
        now = time.time()
        for cid, lat, lng in beats:
            self.seen[cid] = (now, lat, lng)
            self.dirty.add(cid)
            self.moved.add(cid)
        return len(beats)

    async def online(self, cleaner_ids: list[str]) -> list[bool] | str:
        await self._ensure_loaded()
        if self.retired:
            return MOVED
        deadline = time.time() - self.timeout_s
        return [cid in self.seen and self.seen[cid][0] > deadline for cid in cleaner_ids]

    async def locations(self, cleaner_ids: list[str]) -> list[tuple[float, float] | None] | str:
        """Last known (lat, lng) of each cleaner while online, else None."""
        await self._ensure_loaded()
        if self.retired:
            return MOVED
        deadline = time.time() - self.timeout_s
        out: list[tuple[float, float] | None] = []
        for cid in cleaner_ids:
            seen = self.seen.get(cid)
            ok = seen is not None and seen[0] > deadline and seen[1] is not None
            out.append((seen[1], seen[2]) if ok and seen is not None else None)  # type: ignore[misc]
        return out

    async def flush(self) -> int:
        """Write every dirty cleaner's last_seen in one statement; returns how many."""
        await self._ensure_loaded()
        if not self.dirty:
            return 0
        ids, self.dirty = list(self.dirty), set()
        seen = [self.seen[c] for c in ids]
        assert self.pool is not None
        try:
            await self.pool.execute(
                _FLUSH_SQL, ids, [datetime.fromtimestamp(s[0], UTC) for s in seen],
                [s[1] for s in seen], [s[2] for s in seen])
        except BaseException:
            self.dirty.update(ids)  # try again next round
            raise
        # Forget cleaners long gone, so the map holds the online set, not everyone ever seen.
        stale = time.time() - 10 * self.timeout_s
        for cid in [c for c, s in self.seen.items() if s[0] < stale and c not in self.dirty]:
            del self.seen[cid]
        return len(ids)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_flush_s)
            try:
                await self.flush()
            except Exception:
                log.exception("presence shard %d could not write last_seen", self.shard)

    async def notify(self) -> int:
        """Tell watchers who came online, went offline or moved since the last round; returns
        how many events were published."""
        await self._ensure_loaded()
        now = time.time()
        deadline = now - self.timeout_s
        moved, self.moved = self.moved, set()
        moved &= self.seen.keys()  # a cleaner forgotten by flush() since is not news
        came = {c for c in moved if c not in self.announced and self.seen[c][0] > deadline}
        gone = {c for c in self.announced if c not in self.seen or self.seen[c][0] <= deadline}
        located = {c for c in moved - came - gone if c in self.announced and self.seen[c][1] is not None}
        if not (came or gone or located):
            return 0
        if self.bus is None or not self.bus.connected:
            self.moved |= moved  # try again next round; announcements are not lost to a NATS blip
            return 0
        assert self.pool is not None
        try:
            rows = await self.pool.fetch(_WATCHERS_SQL, list(came | gone | located),
                                         [str(s) for s in WATCHING_STATES])
        except BaseException:
            self.moved |= moved  # next round tells them instead
            raise
        watchers: dict[str, list[Watcher]] = {}
        for cleaner_id, client_id, booking_id, state in rows:
            watchers.setdefault(cleaner_id, []).append(Watcher(client_id, booking_id, state))
        published = 0
        for cid in sorted(came | gone | located):
            seen_at, lat, lng = self.seen.get(cid, (deadline, None, None))
            online = cid not in gone
            at = datetime.fromtimestamp(seen_at if online else seen_at + self.timeout_s, UTC)
            for channel, data in presence_broadcasts(
                    cid, online=online, changed=cid not in located, at=at.isoformat(),
                    location=(lat, lng) if lat is not None and lng is not None else None,
                    watchers=watchers.get(cid, [])):
                await self.bus.client.publish(realtime_subject(channel), fanout_message(  # type: ignore[union-attr]
                    app_id=self.app_id, channel=channel, event=RealtimeEvent.CLEANER_PRESENCE,
                    data=json.dumps(data, separators=(",", ":"))))
                published += 1
        self.announced = (self.announced | came) - gone
        self.notified += published
        return published

    async def _notify_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_notify_s)
            try:
                await self.notify()
            except Exception:
                log.exception("presence shard %d could not notify watchers", self.shard)

    async def describe(self) -> dict[str, Any]:
        """What `spotless actors status` shows: cleaners heard from, and where this process runs."""
        await self._ensure_loaded()
        return {"entities": len(self.seen), **process_facts()}

    # --- rebalancing (actors/rebalance.py) ---

    async def retire(self) -> int:
        """Hand over to a new shard set: stop the loops, tell watchers what is pending, write
        every dirty cleaner to PostgreSQL (where the new owners load from); from now on every
        call answers MOVED. Returns how many cleaners were written."""
        self.retired = True
        if not self.loaded:
            return 0
        for task in (self.flusher, self.notifier):
            if task is not None:
                task.cancel()  # a flush cut short puts its cleaners back in `dirty`
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.flusher = self.notifier = None
        try:
            await self.notify()
        except Exception:  # announcements are best effort; last_seen is what must not be lost
            log.exception("presence shard %d could not notify watchers on retiring", self.shard)
        return await self.flush()

    async def resume(self) -> None:
        """Serve again (a rebalance that failed before committing)."""
        self.retired = False
        if self.loaded and self.flusher is None:
            loop = asyncio.get_running_loop()
            self.flusher = loop.create_task(self._flush_forever())
            self.notifier = loop.create_task(self._notify_forever())

    async def pid(self) -> int:
        return os.getpid()


def presence_shard(settings: Settings, shard: int, *, count: int | None = None, prefix: str | None = None) -> Any:
    """The handle of one named presence shard of `count` (the settings' count if not given)."""
    count = count or settings.presence_shards
    name = shard_name(prefix or settings.presence_shard_prefix, shard, count)
    return PresenceShard.options(**shard_options(settings, name)).remote(  # type: ignore[attr-defined]
        settings, shard, count, prefix or settings.presence_shard_prefix)
