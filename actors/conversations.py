"""ConversationShard: the serialiser and cache of a fixed set of conversations; and the router
the edge uses to reach it, coalescing concurrent sends to one shard into one Ray call.

Per conversation a shard keeps the last seq, recent messages (to answer retries without a
query), the participants and read cursors. A send is written to PostgreSQL first, then
acknowledged with its seq, then published on NATS `rt.presence-conversation.{id}`. PostgreSQL is
the truth: a restarted shard (max_restarts=-1) reloads each conversation lazily, and the
unique (conversation_id, seq) and (conversation_id, sender_id, client_msg_id) keys stop a
second writer or a replay from ever forking the sequence.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict, defaultdict
from typing import Any

import ray
from tortoise.exceptions import IntegrityError

from actors.clients import Coalescer
from actors.runtime import shard_options
from core.channels import BookingParties, conversation_channel
from core.chat import check_message, next_seqs, read_cursor_after
from core.errors import Conflict, Invalid, NotFound, Unavailable
from core.events import RealtimeEvent, realtime_subject
from core.realtime import fanout_message, parse_apps, shard_of_conversation
from core.settings import Settings
from storage import chat
from storage.bus import Bus
from storage.db import open_database

log = logging.getLogger("spotless.actors.conversations")

SendItem = tuple[str, str, str, str]  # conversation id, sender id, client_msg_id, body


class _Conversation:
    """One conversation inside its shard (a "virtual actor")."""

    def __init__(self, snapshot: chat.ConversationSnapshot, *, keep: int) -> None:
        self.id = snapshot.id
        self.parties: BookingParties = snapshot.parties
        self.last_seq = snapshot.last_seq
        self.cursors = dict(snapshot.cursors)
        self.keep = keep
        self.recent: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self.remember(snapshot.recent)

    def remember(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.recent[(message["sender_id"], message["client_msg_id"])] = message
        while len(self.recent) > self.keep:
            self.recent.popitem(last=False)


def _error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, Invalid):
        field = exc.errors[0].field if exc.errors else "body"
        return {"error": "invalid", "code": exc.code, "detail": exc.detail, "field": field}
    return {"error": "not_found"}


@ray.remote
class ConversationShard:
    def __init__(self, settings: Settings, shard: int, shard_count: int) -> None:
        self.settings = settings
        self.shard = shard
        self.app_id = parse_apps(settings.realtime_apps)[0].id
        self.conversations: dict[str, _Conversation] = {}
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.bus: Bus | None = None
        self.ready_lock: asyncio.Lock | None = None
        self.calls = 0  # send() calls and the messages they carried: shows the edge's coalescing
        self.items = 0

    async def _ready(self) -> None:
        if self.bus is not None:
            return
        self.ready_lock = self.ready_lock or asyncio.Lock()
        async with self.ready_lock:
            if self.bus is None:
                await open_database(self.settings)
                bus = Bus(self.settings.nats_url or "nats://127.0.0.1:4222",
                          name=f"spotless-conversations-{self.shard}")
                bus.start()
                await bus.wait_connected(5)
                self.bus = bus

    async def _conversation(self, conversation_id: str) -> _Conversation | None:
        conversation = self.conversations.get(conversation_id)
        if conversation is None:
            snapshot = await chat.open_conversation(conversation_id,
                                                    recent=self.settings.chat_recent_messages)
            if snapshot is None:
                return None
            conversation = self.conversations[conversation_id] = _Conversation(
                snapshot, keep=self.settings.chat_recent_messages)
        return conversation

    async def _publish(self, conversation_id: str, event: RealtimeEvent, data: dict[str, Any]) -> None:
        """Live fan-out after commit; a lost publish costs latency only (clients catch up by seq)."""
        if self.bus is None or not self.bus.connected:
            log.warning("NATS down; %s for %s not published", event, conversation_id)
            return
        channel = conversation_channel(conversation_id)
        await self.bus.client.publish(realtime_subject(channel), fanout_message(  # type: ignore[union-attr]
            app_id=self.app_id, channel=channel, event=event, data=json.dumps(data)))

    async def send(self, items: list[SendItem]) -> list[dict[str, Any]]:
        """Send many messages (any conversations of this shard); one result per item:
        {"message", "created"} or {"error": not_found | invalid | retry}."""
        await self._ready()
        self.calls += 1
        self.items += len(items)
        results: list[dict[str, Any]] = [{"error": "retry"}] * len(items)
        by_conversation: defaultdict[str, list[tuple[int, str, str, str]]] = defaultdict(list)
        for index, (conversation_id, sender_id, client_msg_id, body) in enumerate(items):
            by_conversation[conversation_id].append((index, sender_id, client_msg_id, body))
        await asyncio.gather(*(self._send_to(cid, entries, results)
                               for cid, entries in by_conversation.items()))
        return results

    async def _send_to(self, conversation_id: str, entries: list[tuple[int, str, str, str]],
                       results: list[dict[str, Any]]) -> None:
        async with self.locks[conversation_id]:
            conversation = await self._conversation(conversation_id)
            pending: list[tuple[int, str, str, str]] = []
            for index, sender_id, client_msg_id, body in entries:
                if conversation is None or sender_id not in {conversation.parties.client_id,
                                                             conversation.parties.cleaner_id}:
                    results[index] = {"error": "not_found"}
                    continue
                try:
                    body = check_message(body, client_msg_id, max_chars=self.settings.chat_message_max_chars)
                except Invalid as exc:
                    results[index] = _error(exc)
                    continue
                known = conversation.recent.get((sender_id, client_msg_id))
                if known is not None:
                    results[index] = {"message": known, "created": False}
                else:
                    pending.append((index, sender_id, client_msg_id, body))
            if conversation is None or not pending:
                return
            stored = await chat.find_sent(conversation_id, sorted({(s, c) for _, s, c, _ in pending}))
            fresh: list[tuple[str, str, str]] = []
            waiting: dict[tuple[str, str], list[int]] = {}
            for index, sender_id, client_msg_id, body in pending:
                key = (sender_id, client_msg_id)
                if key in stored:
                    results[index] = {"message": stored[key], "created": False}
                elif key in waiting:
                    waiting[key].append(index)  # the same message twice in one batch
                else:
                    waiting[key] = [index]
                    fresh.append((sender_id, client_msg_id, body))
            if not fresh:
                return
            drafts = [chat.Draft(seq, *message)
                      for seq, message in zip(next_seqs(conversation.last_seq, len(fresh)), fresh, strict=True)]
            try:
                messages = await chat.append_messages(conversation_id, drafts, parties=conversation.parties)
            except IntegrityError:
                # Another writer got there first (a rebalance); reload and let the caller retry.
                self.conversations.pop(conversation_id, None)
                return
            conversation.last_seq = messages[-1]["seq"]
            conversation.remember(messages)
            for message in messages:
                first, *repeats = waiting[(message["sender_id"], message["client_msg_id"])]
                results[first] = {"message": message, "created": True}
                for index in repeats:
                    results[index] = {"message": message, "created": False}
            for message in messages:
                await self._publish(conversation_id, RealtimeEvent.CHAT_MESSAGE, message)

    async def mark_read(self, conversation_id: str, user_id: str, seq: int) -> dict[str, Any]:
        """Move a participant's read cursor forward; {"seq"} or {"error"}."""
        await self._ready()
        async with self.locks[conversation_id]:
            conversation = await self._conversation(conversation_id)
            if conversation is None or user_id not in {conversation.parties.client_id,
                                                       conversation.parties.cleaner_id}:
                return {"error": "not_found"}
            try:
                target = read_cursor_after(conversation.cursors.get(user_id, 0), seq,
                                           last_seq=conversation.last_seq)
            except Invalid as exc:
                return _error(exc)
            if target == conversation.cursors.get(user_id, 0) and user_id in conversation.cursors:
                return {"seq": target}
            conversation.cursors[user_id] = await chat.advance_read_cursor(conversation_id, user_id, target)
            await self._publish(conversation_id, RealtimeEvent.CHAT_READ,
                                {"user_id": user_id, "seq": conversation.cursors[user_id]})
            return {"seq": conversation.cursors[user_id]}

    async def pid(self) -> int:
        return os.getpid()

    async def stats(self) -> dict[str, int]:
        return {"calls": self.calls, "items": self.items, "conversations": len(self.conversations)}


def conversation_shard(settings: Settings, shard: int) -> Any:
    count = settings.conversation_shards
    return ConversationShard.options(  # type: ignore[attr-defined]
        **shard_options(settings, f"conversations-{shard}-of-{count}", max_concurrency=256)
    ).remote(settings, shard, count)


def _raise_for(result: dict[str, Any]) -> dict[str, Any]:
    error = result.get("error")
    if error is None:
        return result
    if error == "not_found":
        raise NotFound("no such conversation", code="conversation_not_found")
    if error == "invalid":
        raise Invalid(result["detail"], field=result["field"], code=result["code"])
    raise Conflict("the conversation moved between shards; try again", code="retry")


class ConversationRouter:
    """Edge-side client: routes by conversation id and coalesces concurrent calls per shard."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.shards = [conversation_shard(settings, i) for i in range(settings.conversation_shards)]
        self.coalescer = Coalescer(self._call, max_inflight=settings.shard_client_max_inflight)

    def _call(self, shard: int, method: str, items: list[Any]) -> Any:
        if method == "send":
            return self.shards[shard].send.remote(items)
        raise ValueError(method)

    def shard_of(self, conversation_id: str) -> int:
        return shard_of_conversation(conversation_id, len(self.shards))

    async def send(self, conversation_id: str, *, sender_id: str, client_msg_id: str,
                   body: str) -> tuple[dict[str, Any], bool]:
        """Send (or replay) a message; return it and whether this call created it."""
        item = (conversation_id, sender_id, client_msg_id, body)
        for attempt in range(2):
            try:
                result = await self.coalescer.call(self.shard_of(conversation_id), "send", item)
            except Exception as exc:  # Ray raises several types when an actor is unreachable
                log.exception("conversation shard call failed")
                raise Unavailable(dependency="chat") from exc
            if result.get("error") != "retry" or attempt:
                break
        result = _raise_for(result)
        return result["message"], bool(result["created"])

    async def mark_read(self, conversation_id: str, *, user_id: str, seq: int) -> int:
        try:
            result = await self.shards[self.shard_of(conversation_id)].mark_read.remote(
                conversation_id, user_id, seq)
        except Exception as exc:
            log.exception("conversation shard call failed")
            raise Unavailable(dependency="chat") from exc
        return int(_raise_for(result)["seq"])
