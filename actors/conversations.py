"""ConversationShard: the serialiser and cache of a fixed set of conversations; and the router
the edge uses to reach it, coalescing concurrent sends to one shard into one Ray call.

Per conversation a shard keeps the last seq, recent messages (to answer retries without a
query), the participants and read cursors. A send is written to PostgreSQL first, then
acknowledged with its seq, then published on NATS `rt.presence-conversation.{id}`. One Ray call
carries every send an edge worker queued meanwhile, and the shard writes them all, whatever
their conversations, in one transaction; retries are answered from the recent messages, and
only when PostgreSQL refuses a batch (a retry older than the cache) does it ask PostgreSQL
conversation by conversation. A send that names an attachment is checked against PostgreSQL in
the same batch (one query for all the batch's attachments). PostgreSQL is
the truth: a restarted shard (max_restarts=-1) reloads each conversation lazily, and the
unique (conversation_id, seq) and (conversation_id, sender_id, client_msg_id) keys stop a
second writer or a replay from ever forking the sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import OrderedDict, defaultdict, deque
from typing import Any

import ray
from tortoise.exceptions import IntegrityError

from actors.layout import MOVED, SHARD_GONE, Layouts, ShardSet
from actors.presence_channels import PresenceChannels
from actors.runtime import shard_name, shard_options, shard_process_started
from actors.status import process_facts
from core.accounts import AccountError
from core.batching import Coalescer
from core.channels import BookingParties, conversation_channel
from core.chat import check_attachment, check_message, next_seqs, read_cursor_after
from core.errors import Conflict, Invalid, NotFound, Unauthenticated, Unavailable
from core.events import RealtimeEvent, realtime_subject
from core.realtime import fanout_message, parse_apps, shard_of_conversation
from core.settings import Settings
from storage import chat
from storage.bus import Bus
from storage.db import open_database
from storage.shard_layout import read_layout

log = logging.getLogger("spotless.actors.conversations")

# conversation id, sender id, client_msg_id, body, attachment id (canonical uuid text) or None
SendItem = tuple[str, str, str, str, str | None]


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


Entry = tuple[int, str, str, str, str | None]  # index in the batch, sender id, client_msg_id, body, attachment


class _Plan:
    """What one batch writes to one conversation: its new messages, and which items wait on each."""

    def __init__(self, conversation: _Conversation, pending: list[Entry]) -> None:
        self.conversation = conversation
        self.pending = pending
        self.waiting: dict[tuple[str, str], list[int]] = {}
        self.fresh: list[tuple[str, str, str, str | None]] = []

    def fresh_only(self) -> None:
        """Group the pending items by (sender, client_msg_id): the same message twice in one
        batch is written once."""
        self.waiting, self.fresh = {}, []
        for index, sender_id, client_msg_id, body, attachment_id in self.pending:
            key = (sender_id, client_msg_id)
            if key in self.waiting:
                self.waiting[key].append(index)
            else:
                self.waiting[key] = [index]
                self.fresh.append((sender_id, client_msg_id, body, attachment_id))

    def drafts(self) -> list[chat.Draft]:
        seqs = next_seqs(self.conversation.last_seq, len(self.fresh))
        return [chat.Draft(seq, *message) for seq, message in zip(seqs, self.fresh, strict=True)]


def _error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, Invalid):
        field = exc.errors[0].field if exc.errors else "body"
        return {"error": "invalid", "code": exc.code, "detail": exc.detail, "field": field}
    if isinstance(exc, Conflict):
        return {"error": "conflict", "code": exc.code, "detail": exc.detail}
    return {"error": "not_found"}


SLOW_WRITE_MS = 20.0  # a batch statement over this is remembered with its time (`_Writes.slow`)


class _Writes:
    """The batch statements a shard has run: how many, their total time, and the recent slow
    ones as (unix time it ended, milliseconds, messages), so that a latency tail can be laid
    beside the moments PostgreSQL held the shard (the chat benchmark does, per row)."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.slow: deque[tuple[float, float, int]] = deque(maxlen=512)

    def add(self, seconds: float, messages: int) -> None:
        self.count += 1
        self.seconds += seconds
        if seconds * 1000 > SLOW_WRITE_MS:
            self.slow.append((time.time(), seconds * 1000, messages))


@ray.remote
class ConversationShard:
    def __init__(self, settings: Settings, shard: int, shard_count: int, prefix: str | None = None) -> None:
        shard_process_started()
        self.settings = settings
        self.shard = shard
        self.shard_count = shard_count
        self.prefix = prefix or settings.conversation_shard_prefix
        # Retired (by a rebalance, or at birth when the layout has no place for this count), a
        # shard answers every call with MOVED; `active` counts the calls it is still serving.
        self.retired = False
        self.active = 0
        self.idle: asyncio.Event | None = None  # set when the last call in flight ends
        self.app_id = parse_apps(settings.realtime_apps)[0].id
        self.conversations: dict[str, _Conversation] = {}
        self.locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.bus: Bus | None = None
        self.ready_lock: asyncio.Lock | None = None
        self.calls = 0  # send() calls and the messages they carried: shows the edge's coalescing
        self.items = 0
        self.writes = _Writes()  # how long the batch statements took: shows what PostgreSQL adds
        self.unwatched: list[tuple[str, int, str]] = []  # (conversation, seq, recipient) sent since the last withdrawal
        self.unwatched_since = 0.0  # when the oldest of them was sent (time.monotonic)
        self.withdrawing: asyncio.Task[None] | None = None  # the task that withdraws their pushes
        self.presence_channels: PresenceChannels | None = None  # who watches: made on first use

    async def _ready(self) -> None:
        if self.bus is not None:
            return
        self.ready_lock = self.ready_lock or asyncio.Lock()
        async with self.ready_lock:
            if self.bus is None:
                await open_database(self.settings)
                layout = await read_layout(KIND, self.prefix, default_count=self.shard_count)
                if self.shard_count not in layout.counts:
                    # A process with a stale layout made this shard: it must never write.
                    log.warning("conversation shard %d of %d is not in the layout (%s); retired",
                                self.shard, self.shard_count, sorted(layout.counts))
                    self.retired = True
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

    async def _conversations(self, ids: list[str]) -> list[_Conversation | None]:
        """`_conversation` of each id: those in memory at once, the others loaded concurrently."""
        found: list[_Conversation | None] = [self.conversations.get(cid) for cid in ids]
        missing = [index for index, conversation in enumerate(found) if conversation is None]
        if missing:
            loaded = await asyncio.gather(*(self._conversation(ids[index]) for index in missing))
            for index, conversation in zip(missing, loaded, strict=True):
                found[index] = conversation
        return found

    async def _publish(self, conversation_id: str, event: RealtimeEvent, data: dict[str, Any]) -> None:
        """Live fan-out after commit; a lost publish costs latency only (clients catch up by seq)."""
        if self.bus is None or not self.bus.connected:
            log.warning("NATS down; %s for %s not published", event, conversation_id)
            return
        channel = conversation_channel(conversation_id)
        await self.bus.client.publish(realtime_subject(channel), fanout_message(  # type: ignore[union-attr]
            app_id=self.app_id, channel=channel, event=event, data=json.dumps(data)))

    @contextlib.asynccontextmanager
    async def _serving(self) -> Any:
        """Yields whether to serve this call: False once retired. A call that got in finishes
        before `retire()` returns."""
        self.active += 1
        try:
            await self._ready()
            yield not self.retired
        finally:
            self.active -= 1
            if not self.active and self.idle is not None:
                self.idle.set()

    async def send(self, items: list[SendItem]) -> list[dict[str, Any]]:
        """Send many messages (any conversations of this shard); one result per item:
        {"message", "created"} or {"error": not_found | invalid | suspended | retry | moved}.

        The whole batch is written in one transaction (one multi-row INSERT for every
        conversation in it), under the locks of all its conversations, taken in id order."""
        if self.retired:
            return [{"error": MOVED}] * len(items)
        async with self._serving() as serving:
            if not serving:
                return [{"error": MOVED}] * len(items)
            return await self._send(items)

    async def _send(self, items: list[SendItem]) -> list[dict[str, Any]]:
        self.calls += 1
        self.items += len(items)
        results: list[dict[str, Any]] = [{"error": "retry"}] * len(items)
        by_conversation: defaultdict[str, list[Entry]] = defaultdict(list)
        for index, (conversation_id, sender_id, client_msg_id, body, attachment_id) in enumerate(items):
            if shard_of_conversation(conversation_id, self.shard_count) != self.shard:
                results[index] = {"error": MOVED}  # routed by another layout: never a second writer
                continue
            by_conversation[conversation_id].append((index, sender_id, client_msg_id, body, attachment_id))
        ids = sorted(by_conversation)
        sent: list[tuple[str, int, str]] = []
        async with contextlib.AsyncExitStack() as held:
            for conversation_id in ids:
                await held.enter_async_context(self.locks[conversation_id])
            loaded = await self._conversations(ids)
            plans = []
            for cid, conversation in zip(ids, loaded, strict=True):
                pending = self._pending(conversation, by_conversation[cid], results)
                if conversation is not None and pending:
                    plans.append(_Plan(conversation, pending))
            if any(entry[4] for plan in plans for entry in plan.pending):
                await self._check_attachments(plans, results)
                plans = [plan for plan in plans if plan.pending]
            for plan in plans:
                plan.fresh_only()  # retries within the cache were answered by _pending
            if plans:
                sent = await self._write(plans, results)
        if sent:
            self._withdraw_pushes_soon(sent)
        return results

    async def _write(self, plans: list[_Plan], results: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
        """Write the batch in one statement and answer it; what `_accept` returns."""
        batch = [(p.conversation.id, p.drafts(), p.conversation.parties) for p in plans]
        started = time.perf_counter()
        try:
            written = await chat.append_batch(batch, push_hold_s=self.settings.chat_push_hold_s)
        except IntegrityError:
            # A retry older than the cache, or a second writer (a rebalance): nothing was
            # written; take each conversation on its own, asking PostgreSQL what it holds.
            return [item for plan in plans for item in await self._send_carefully(plan, results)]
        except chat.SendersSuspended as exc:
            return await self._write_without(plans, results, exc.sender_ids)
        self.writes.add(time.perf_counter() - started, sum(len(drafts) for _, drafts, _ in batch))
        return [item for plan, messages in zip(plans, written, strict=True)
                for item in await self._accept(plan, messages, results)]

    async def _write_without(self, plans: list[_Plan], results: list[dict[str, Any]],
                             suspended: set[str]) -> list[tuple[str, int, str]]:
        """Refuse the sends of suspended senders and write the rest; what `_write` returns. (No
        one suspended any more, a reinstatement meanwhile: the batch stays "retry" and the
        router sends it again.)"""
        if not suspended:
            return []
        for plan in plans:
            for index, sender_id, *_ in plan.pending:
                if sender_id in suspended:
                    results[index] = {"error": "suspended"}
            plan.pending = [entry for entry in plan.pending if entry[1] not in suspended]
            plan.fresh_only()
        plans = [plan for plan in plans if plan.pending]
        return await self._write(plans, results) if plans else []

    def _withdraw_pushes_soon(self, sent: list[tuple[str, int, str]]) -> None:
        """Queue the held push requests of messages just sent, to be withdrawn where their
        recipient turns out to be watching the conversation. The send has been answered already.

        The question goes to the presence-channel shards for everything sent meanwhile, once
        per `_withdrawal_delay_s` (a Ray call per send batch cost those shards more CPU than
        chat itself at a few hundred messages a second), and the answer withdraws the spared
        requests in one statement, all within the hold."""
        if not self.unwatched:
            self.unwatched_since = time.monotonic()
        self.unwatched.extend(sent)
        if self.withdrawing is None:
            self.withdrawing = asyncio.get_running_loop().create_task(self._withdraw_meanwhile())

    def _withdrawal_delay_s(self) -> float:
        # A quarter of the hold gathers the batch and at most half waits for the answer
        # (`_watching`), which leaves the last quarter for the withdrawal itself.
        return self.settings.chat_push_hold_s / 4

    async def _withdraw_meanwhile(self) -> None:
        try:
            while self.unwatched:
                # counted from the oldest message waiting, which may have waited for the last answer
                await asyncio.sleep(max(0.0, self.unwatched_since + self._withdrawal_delay_s() - time.monotonic()))
                sent, self.unwatched = self.unwatched, []
                present = await self._watching(sorted({cid for cid, _, _ in sent}))
                spared = [(cid, seq) for cid, seq, recipient in sent if recipient in present.get(cid, ())]
                if spared:
                    try:
                        await chat.withdraw_pushes(spared)
                    except Exception:  # the pushes go out: one too many beats a message nobody hears of
                        log.warning("could not withdraw %d push requests", len(spared), exc_info=True)
        finally:
            self.withdrawing = None

    async def _watching(self, conversation_ids: list[str]) -> dict[str, set[str]]:
        """Users with a socket on each conversation's channel (the presence-channel shards know);
        when those cannot answer, nobody: a push too many beats a message nobody hears of."""
        try:
            self.presence_channels = self.presence_channels or PresenceChannels(self.settings)
            channels = await asyncio.wait_for(self.presence_channels.watching(
                self.app_id, [conversation_channel(cid) for cid in conversation_ids]),
                self.settings.chat_push_hold_s / 2)
        except Exception:  # Ray raises several types while a shard restarts
            log.warning("presence channels did not answer; pushing to every recipient", exc_info=True)
            return {}
        return {cid: channels.get(conversation_channel(cid), set()) for cid in conversation_ids}

    def _pending(self, conversation: _Conversation | None, entries: list[Entry],
                 results: list[dict[str, Any]]) -> list[Entry]:
        """Refuse what is not allowed, answer retries from the cache; return the rest."""
        pending: list[Entry] = []
        for index, sender_id, client_msg_id, body, attachment_id in entries:
            if conversation is None or sender_id not in {conversation.parties.client_id,
                                                         conversation.parties.cleaner_id}:
                results[index] = {"error": "not_found"}
                continue
            try:
                body = check_message(body, client_msg_id, max_chars=self.settings.chat_message_max_chars,
                                     has_attachment=attachment_id is not None)
            except Invalid as exc:
                results[index] = _error(exc)
                continue
            known = conversation.recent.get((sender_id, client_msg_id))
            if known is not None:
                results[index] = {"message": known, "created": False}
            else:
                pending.append((index, sender_id, client_msg_id, body, attachment_id))
        return pending

    async def _check_attachments(self, plans: list[_Plan], results: list[dict[str, Any]]) -> None:
        """Refuse sends whose attachment is missing, someone else's, refused or already sent
        (one query for the whole batch); within the batch, an attachment goes with the first
        message that names it."""
        found = await chat.find_attachments([e[4] for plan in plans for e in plan.pending if e[4]])
        claimed: dict[str, tuple[str, str]] = {}
        for plan in plans:
            kept: list[Entry] = []
            for entry in plan.pending:
                index, sender_id, client_msg_id, _, attachment_id = entry
                if attachment_id is not None:
                    row = found.get(attachment_id)
                    used_by = claimed.get(attachment_id)
                    if used_by is None and row is not None and row["used_sender"] is not None:
                        used_by = (row["used_sender"], row["used_client_msg_id"])
                    try:
                        check_attachment(row, conversation_id=plan.conversation.id, sender_id=sender_id,
                                         used_by=used_by, client_msg_id=client_msg_id)
                    except (Invalid, Conflict) as exc:
                        results[index] = _error(exc)
                        continue
                    claimed[attachment_id] = (sender_id, client_msg_id)
                kept.append(entry)
            plan.pending = kept

    async def _send_carefully(self, plan: _Plan, results: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
        """One conversation: answer retries from PostgreSQL, then write the rest; returns what
        `_accept` does."""
        conversation = plan.conversation
        stored = await chat.find_sent(conversation.id, sorted({(s, c) for _, s, c, _, _ in plan.pending}))
        for index, sender_id, client_msg_id, _, _ in plan.pending:
            if (sender_id, client_msg_id) in stored:
                results[index] = {"message": stored[(sender_id, client_msg_id)], "created": False}
        plan.pending = [entry for entry in plan.pending if (entry[1], entry[2]) not in stored]
        plan.fresh_only()
        if not plan.pending:
            return []
        try:
            messages = await chat.append_messages(conversation.id, plan.drafts(), parties=conversation.parties,
                                                  push_hold_s=self.settings.chat_push_hold_s)
        except IntegrityError:
            # Another writer got there first (a rebalance); reload and let the caller retry.
            self.conversations.pop(conversation.id, None)
            return []
        except chat.SendersSuspended as exc:
            return await self._write_without([plan], results, exc.sender_ids)
        return await self._accept(plan, messages, results)

    async def _accept(self, plan: _Plan, messages: list[dict[str, Any]],
                      results: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
        """After commit: remember, answer every item (repeats get the first), publish in order;
        returns (conversation id, seq, recipient) of each message written."""
        conversation = plan.conversation
        conversation.last_seq = messages[-1]["seq"]
        conversation.remember(messages)
        for message in messages:
            first, *repeats = plan.waiting[(message["sender_id"], message["client_msg_id"])]
            results[first] = {"message": message, "created": True}
            for index in repeats:
                results[index] = {"message": message, "created": False}
        for message in messages:
            await self._publish(conversation.id, RealtimeEvent.CHAT_MESSAGE, message)
        return [(conversation.id, m["seq"], chat.recipient_of(m["sender_id"], conversation.parties))
                for m in messages]

    async def mark_read(self, conversation_id: str, user_id: str, seq: int) -> dict[str, Any]:
        """Move a participant's read cursor forward; {"seq"} or {"error"}."""
        async with self._serving() as serving:
            if not serving or shard_of_conversation(conversation_id, self.shard_count) != self.shard:
                return {"error": MOVED}
            return await self._mark_read(conversation_id, user_id, seq)

    async def _mark_read(self, conversation_id: str, user_id: str, seq: int) -> dict[str, Any]:
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

    async def describe(self) -> dict[str, Any]:
        """What `spotless actors status` shows: conversations in memory, and where it runs."""
        return {"entities": len(self.conversations), **process_facts()}

    async def pid(self) -> int:
        return os.getpid()

    async def stats(self) -> dict[str, Any]:
        """Calls and messages taken, conversations held, and the batch statements: how many,
        their total seconds, and the recent ones over `SLOW_WRITE_MS` as [unix time, ms, messages]."""
        return {"calls": self.calls, "items": self.items, "conversations": len(self.conversations),
                "writes": self.writes.count, "write_s": self.writes.seconds,
                "slow_writes": [list(slow) for slow in self.writes.slow]}

    # --- rebalancing (actors/rebalance.py) ---

    async def retire(self) -> int:
        """Hand over to a new shard set: calls in flight finish (each persisted its messages
        before answering, so nothing acknowledged is lost), later ones answer MOVED and their
        callers retry on the new owner, which loads from PostgreSQL. Returns how many
        conversations it held."""
        self.retired = True
        if self.active:
            self.idle = asyncio.Event()
            await self.idle.wait()
        held = len(self.conversations)
        self.conversations.clear()
        return held

    async def resume(self) -> None:
        """Serve again (a rebalance that failed before committing); reloads lazily."""
        self.conversations.clear()
        self.retired = False


CONVERSATIONS_PREFIX = "conversations"  # the default of settings.conversation_shard_prefix
KIND = "conversations"


def conversation_shard(settings: Settings, shard: int, *, count: int | None = None,
                       prefix: str | None = None) -> Any:
    """The handle of one named conversation shard of `count` (the settings' count if not given)."""
    count = count or settings.conversation_shards
    prefix = prefix or settings.conversation_shard_prefix
    return ConversationShard.options(  # type: ignore[attr-defined]
        **shard_options(settings, shard_name(prefix, shard, count), max_concurrency=256)
    ).remote(settings, shard, count, prefix)


def _raise_for(result: dict[str, Any]) -> dict[str, Any]:
    error = result.get("error")
    if error is None:
        return result
    if error == "not_found":
        raise NotFound("no such conversation", code="conversation_not_found")
    if error == "invalid":
        raise Invalid(result["detail"], field=result["field"], code=result["code"])
    if error == "conflict":
        raise Conflict(result["detail"], code=result["code"])
    if error == "suspended":
        raise Unauthenticated("this account is suspended", code=AccountError.ACCOUNT_SUSPENDED)
    raise Conflict("the conversation moved between shards; try again", code="retry")


class ConversationRouter:
    """Edge-side client: routes by conversation id under the shard layout (actors/layout.py)
    and coalesces concurrent calls per shard. A shard that answers "moved" (retired by a
    rebalance) or is gone sends the call, once the new layout commits, to the new owner; a send
    retried there is answered as a replay, never written twice (the client_msg_id key)."""

    def __init__(self, settings: Settings, *, layouts: Layouts | None = None, prefix: str | None = None) -> None:
        self.settings = settings
        self.prefix = prefix or settings.conversation_shard_prefix
        self.layouts = layouts or Layouts(settings)
        self.sets = ShardSet(lambda shard, count: conversation_shard(settings, shard, count=count,
                                                                     prefix=self.prefix))
        self.coalescer = Coalescer(self._call, max_inflight=settings.shard_client_max_inflight)

    @property
    def shards(self) -> list[Any]:
        """The shards of the layout last seen, in shard order."""
        layout = self.layouts.last_seen(KIND, self.prefix)
        return self.sets.of(layout.shard_count, layout.epoch)

    def _call(self, slot: int, method: str, items: list[Any]) -> Any:
        if method == "send":
            return self.sets[slot].send.remote(items)
        raise ValueError(method)

    def shard_of(self, conversation_id: str, count: int | None = None) -> int:
        return shard_of_conversation(conversation_id,
                                     count or self.layouts.last_seen(KIND, self.prefix).shard_count)

    async def _layout_after(self, epoch: int, *, gone_since: float | None = None) -> Any:
        try:
            return await self.layouts.after(KIND, self.prefix, epoch, gone_since=gone_since)
        except Unavailable:
            if gone_since is not None:
                raise Unavailable(dependency="chat") from None
            raise Conflict("the conversation is moving between shards; try again", code="retry") from None

    async def send(self, conversation_id: str, *, sender_id: str, client_msg_id: str,
                   body: str, attachment_id: str | None = None) -> tuple[dict[str, Any], bool]:
        """Send (or replay) a message; return it and whether this call created it."""
        item = (conversation_id, sender_id, client_msg_id, body, attachment_id)
        layout = await self.layouts.get(KIND, self.prefix)
        retried = False
        gone_since: float | None = None
        while True:
            slot = self.sets.slot(self.shard_of(conversation_id, layout.shard_count), layout.shard_count,
                                  layout.epoch)
            try:
                result = await self.coalescer.call(slot, "send", item)
            except SHARD_GONE:
                gone_since = gone_since or time.monotonic()
                layout = await self._layout_after(layout.epoch, gone_since=gone_since)
                continue
            except Exception as exc:  # Ray raises several types when an actor is unreachable
                log.exception("conversation shard call failed")
                raise Unavailable(dependency="chat") from exc
            if result.get("error") == MOVED:
                layout = await self._layout_after(layout.epoch)
                continue
            if result.get("error") == "retry" and not retried:
                retried = True
                continue
            break
        result = _raise_for(result)
        return result["message"], bool(result["created"])

    async def mark_read(self, conversation_id: str, *, user_id: str, seq: int) -> int:
        layout = await self.layouts.get(KIND, self.prefix)
        gone_since: float | None = None
        while True:
            shard = self.sets[self.sets.slot(self.shard_of(conversation_id, layout.shard_count),
                                             layout.shard_count, layout.epoch)]
            try:
                result = await shard.mark_read.remote(conversation_id, user_id, seq)
            except SHARD_GONE:
                gone_since = gone_since or time.monotonic()
                layout = await self._layout_after(layout.epoch, gone_since=gone_since)
                continue
            except Exception as exc:
                log.exception("conversation shard call failed")
                raise Unavailable(dependency="chat") from exc
            if result.get("error") != MOVED:
                return int(_raise_for(result)["seq"])
            layout = await self._layout_after(layout.epoch)
