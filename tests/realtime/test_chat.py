"""Chat through the REST API and ConversationShards: seqs, retries, catch-up, shard restarts."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import ray

from core.events import EventType
from core.realtime import shard_of_conversation
from storage.models import OutboxEvent
from tests.realtime.conftest import REALTIME_ENV, auth_for, on_conversation, unique


async def send(api: httpx.AsyncClient, account, conversation_id: str, body: str,
               client_msg_id: str | None = None):
    return await api.post(f"/api/v1/conversations/{conversation_id}/messages", headers=account.auth,
                    json={"client_msg_id": client_msg_id or unique("m-"), "body": body})


async def messages(api, account, conversation_id: str, **params) -> list[dict]:
    response = await api.get(f"/api/v1/conversations/{conversation_id}/messages", headers=account.auth,
                       params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_a_sent_message_is_acknowledged_with_its_seq_and_pushed_to_the_channel(
        booking, sockets, rt_api, rt_async):
    api = rt_async[0]
    # given the cleaner listening on the conversation channel
    client, cleaner, conversation_id = await booking()
    channel = f"presence-conversation.{conversation_id}"
    listener = await sockets(1)
    await listener.subscribe(channel, auth_for(rt_api, cleaner, listener.socket_id, channel))
    # when the client sends twice
    first = await send(api, client, conversation_id, "  Hello, is 9am ok?  ")
    second = await send(api, client, conversation_id, "Door code is 1234")
    # then
    assert first.status_code == 201, first.text
    assert [first.json()["data"]["seq"], second.json()["data"]["seq"]] == [1, 2]
    assert first.json()["data"]["body"] == "Hello, is 9am ok?"
    pushed = [(await listener.expect("chat.message", channel))["data"] for _ in range(2)]
    assert [m["seq"] for m in pushed] == [1, 2] and pushed[0]["sender_id"] == client.id
    assert [m["body"] for m in await messages(api, cleaner, conversation_id)] == [
        "Hello, is 9am ok?", "Door code is 1234"]


async def test_a_retried_send_returns_the_first_message(booking, rt_async):
    api = rt_async[0]
    client, _, conversation_id = await booking()
    first = await send(api, client, conversation_id, "once", client_msg_id="retry-1")
    again = await send(api, client, conversation_id, "once (resent)", client_msg_id="retry-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["data"] == first.json()["data"]
    assert len(await messages(api, client, conversation_id)) == 1


async def test_concurrent_sends_from_both_parties_get_gapless_seqs(booking, rt_edges):
    # given both parties sending at once through both edge workers, with some retries mixed in
    client, cleaner, conversation_id = await booking()

    async def burst(edge, account, prefix):
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as api:
            calls = [api.post(f"/api/v1/conversations/{conversation_id}/messages", headers=account.auth,
                              json={"client_msg_id": f"{prefix}-{n % 20}", "body": f"{prefix} {n % 20}"})
                     for n in range(25)]
            return await asyncio.gather(*calls)

    # when
    results = await asyncio.gather(burst(rt_edges[0], client, "c"), burst(rt_edges[1], cleaner, "k"))
    # then every distinct message got one seq, 1..40 without gaps, and retries got the same one
    responses = [r for batch in results for r in batch]
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses][:3]
    by_key = {}
    for r in responses:
        message = r.json()["data"]
        by_key.setdefault((message["sender_id"], message["client_msg_id"]), set()).add(message["seq"])
    assert all(len(seqs) == 1 for seqs in by_key.values())
    async with httpx.AsyncClient(base_url=rt_edges[0].url) as api:
        stored = await messages(api, client, conversation_id, limit=100)
    assert [m["seq"] for m in stored] == list(range(1, 41))


async def test_a_reconnecting_client_gets_exactly_what_it_missed(booking, sockets, rt_async):
    api = rt_async[0]
    # given the cleaner saw messages up to seq 3, then went offline
    client, cleaner, conversation_id = await booking()
    for n in range(3):
        await send(api, client, conversation_id, f"before {n}")
    # when three more arrive while offline
    for n in range(3):
        await send(api, client, conversation_id, f"while away {n}")
    # then asking for after_seq=3 returns exactly those, in order, and paging works both ways
    missed = await messages(api, cleaner, conversation_id, after_seq=3)
    assert [(m["seq"], m["body"]) for m in missed] == [(4, "while away 0"), (5, "while away 1"),
                                                       (6, "while away 2")]
    assert [m["seq"] for m in await messages(api, cleaner, conversation_id, after_seq=1, limit=2)] == [2, 3]
    assert [m["seq"] for m in await messages(api, cleaner, conversation_id, before_seq=3)] == [1, 2]
    assert [m["seq"] for m in await messages(api, cleaner, conversation_id, limit=2)] == [5, 6]


async def test_outsiders_get_404_everywhere(booking, party, rt_async):
    api = rt_async[0]
    client, _, conversation_id = await booking()
    outsider = party("cleaner")
    assert (await send(api, outsider, conversation_id, "hi")).status_code == 404
    assert (await api.get(f"/api/v1/conversations/{conversation_id}/messages",
                          headers=outsider.auth)).status_code == 404
    assert (await api.post(f"/api/v1/conversations/{conversation_id}/read", headers=outsider.auth,
                           json={"seq": 1})).status_code == 404
    assert (await send(api, client, "not-a-uuid", "hi")).status_code == 404
    assert (await send(api, client, "00000000-0000-0000-0000-000000000001", "hi")).status_code == 404


async def test_bad_messages_are_422_naming_the_field(booking, rt_async):
    api = rt_async[0]
    client, _, conversation_id = await booking()
    blank = await send(api, client, conversation_id, "   ")
    bad_id = await send(api, client, conversation_id, "hi", client_msg_id="has space")
    assert blank.status_code == 422 and blank.json()["code"] == "empty_message"
    assert bad_id.status_code == 422 and bad_id.json()["errors"][0]["field"] == "client_msg_id"


async def test_read_cursors_drive_unread_counts(booking, rt_api, rt_async, sockets):
    api = rt_async[0]
    # given three messages from the client
    client, cleaner, conversation_id = await booking()
    for n in range(3):
        await send(api, client, conversation_id, f"m{n}")

    async def listed(account):
        rows = (await api.get("/api/v1/conversations", headers=account.auth)).json()["data"]
        return next(r for r in rows if r["id"] == conversation_id)

    # then the cleaner has three unread, the client none (their own messages)
    assert ((await listed(cleaner))["unread"], (await listed(client))["unread"]) == (3, 0)
    assert (await listed(cleaner))["with"]["name"] == "Cora Client"
    # when the cleaner reads up to seq 2 (and a stale cursor arrives late, and one beyond the end)
    channel = f"presence-conversation.{conversation_id}"
    watcher = await sockets()
    await watcher.subscribe(channel, auth_for(rt_api, client, watcher.socket_id, channel))
    read = await api.post(f"/api/v1/conversations/{conversation_id}/read", headers=cleaner.auth,
                          json={"seq": 2})
    stale = await api.post(f"/api/v1/conversations/{conversation_id}/read", headers=cleaner.auth,
                           json={"seq": 1})
    # then
    assert read.json()["data"]["read_seq"] == 2 and stale.json()["data"]["read_seq"] == 2
    assert (await listed(cleaner))["unread"] == 1
    event = await watcher.expect("chat.read", channel)
    assert event["data"] == {"user_id": cleaner.id, "seq": 2}
    beyond = await api.post(f"/api/v1/conversations/{conversation_id}/read", headers=cleaner.auth,
                         json={"seq": 99})
    assert beyond.json()["data"]["read_seq"] == 3 and (await listed(cleaner))["unread"] == 0


async def test_killing_a_shard_loses_nothing_acknowledged(booking, rt_edges, settings):
    # given acknowledged messages held by a shard
    client, cleaner, conversation_id = await booking()
    async with httpx.AsyncClient(base_url=rt_edges[0].url, timeout=60) as api:
        acked = [(await send(api, client, conversation_id, f"m{n}")).json()["data"] for n in range(5)]
    count = int(REALTIME_ENV["SPOTLESS_CONVERSATION_SHARDS"])
    shard = shard_of_conversation(conversation_id, count)
    actor = ray.get_actor(f"conversations-{shard}-of-{count}", namespace=settings.ray_namespace)
    pid = await actor.pid.remote()

    # when its process is killed while both parties keep sending
    async def keep_sending(edge, account, prefix):
        async with httpx.AsyncClient(base_url=edge.url, timeout=60) as api:
            out = []
            for n in range(10):
                response = await api.post(f"/api/v1/conversations/{conversation_id}/messages",
                                          headers=account.auth,
                                          json={"client_msg_id": f"{prefix}{n}", "body": f"{prefix}{n}"})
                out.append(response)
                await asyncio.sleep(0.05)
            return out

    sending = asyncio.gather(keep_sending(rt_edges[0], client, "a"), keep_sending(rt_edges[1], cleaner, "b"))
    await asyncio.sleep(0.15)
    os.kill(pid, signal.SIGKILL)
    results = [r for batch in await sending for r in batch]

    # then the shard came back in a new process, every acknowledged message is stored once, and
    # seqs stay gapless
    assert await actor.pid.remote() != pid
    acked += [r.json()["data"] for r in results if r.status_code in (200, 201)]
    assert len(acked) >= 5 + 15, [r.text for r in results if r.status_code not in (200, 201)]
    async with httpx.AsyncClient(base_url=rt_edges[1].url) as api:
        stored = await messages(api, cleaner, conversation_id, limit=100)
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
    stored_by_key = {(m["sender_id"], m["client_msg_id"]): m for m in stored}
    for message in acked:
        assert stored_by_key[(message["sender_id"], message["client_msg_id"])] == message
    # and sending after the restart continues the sequence
    async with httpx.AsyncClient(base_url=rt_edges[0].url, timeout=60) as api:
        after = (await send(api, client, conversation_id, "after restart")).json()["data"]
    assert after["seq"] == len(stored) + 1


async def test_concurrent_sends_to_one_shard_are_coalesced_into_fewer_ray_calls(booking, rt_async, settings):
    # given a conversation whose shard is warm
    api = rt_async[0]
    client, _, conversation_id = await booking()
    assert (await send(api, client, conversation_id, "warm up")).status_code == 201
    count = int(REALTIME_ENV["SPOTLESS_CONVERSATION_SHARDS"])
    actor = ray.get_actor(f"conversations-{shard_of_conversation(conversation_id, count)}-of-{count}",
                          namespace=settings.ray_namespace)
    before = await actor.stats.remote()
    # when thirty sends arrive at one edge worker at once
    responses = await asyncio.gather(*(send(api, client, conversation_id, f"m{n}") for n in range(30)))
    after = await actor.stats.remote()
    # then all are stored, gapless, through fewer Ray calls than messages
    assert sorted(r.json()["data"]["seq"] for r in responses) == list(range(2, 32))
    assert after["items"] - before["items"] == 30
    assert after["calls"] - before["calls"] < 30
    # and each call wrote its batch in one statement, timed for the shard's stats
    assert after["writes"] - before["writes"] == after["calls"] - before["calls"]
    assert after["write_s"] > before["write_s"]


async def test_conversations_are_listed_a_page_at_a_time_most_recent_first(booking, rt_async):
    from datetime import timedelta

    from tortoise import connections

    from core.clock import utcnow
    from core.ids import new_id

    api = rt_async[0]
    # given a client with three bookings (so three conversations) with one cleaner
    client, cleaner, first = await booking()
    ids = [first]
    for days in (5, 8):
        booking_id, starts = str(new_id()), utcnow() + timedelta(days=days)
        await connections.get("default").execute_query(
            "INSERT INTO bookings (id, client_id, cleaner_id, service_id, state, starts_at, ends_at) "
            "VALUES ($1, $2, $3, 'standard', 'accepted', $4, $5)",
            [booking_id, client.id, cleaner.id, starts, starts + timedelta(hours=2)])
        ids.append(booking_id)
    # and the oldest conversation has the latest message
    assert (await send(api, client, first, "still on for Tuesday?")).status_code == 201
    # when the client pages through two at a time
    page1 = (await api.get("/api/v1/conversations", headers=client.auth, params={"limit": 2})).json()
    page2 = (await api.get("/api/v1/conversations", headers=client.auth,
                           params={"limit": 2, "cursor": page1["next_cursor"]})).json()
    # then all three come once, the one with the message first, and the last page says so
    listed = [c["id"] for c in page1["data"] + page2["data"]]
    assert sorted(listed) == sorted(ids) and listed[0] == first
    assert page2["next_cursor"] is None
    bad = await api.get("/api/v1/conversations", headers=client.auth, params={"cursor": "bm9wZQ"})
    assert bad.status_code == 422


async def test_a_retry_older_than_the_shards_cache_is_answered_from_postgresql(booking, rt_async):
    # given two conversations, the first with more messages than a shard keeps in memory
    api = rt_async[0]
    client, _, old = await booking()
    other_client, _, fresh = await booking()
    for start in range(0, 110, 22):
        batch = await asyncio.gather(*(send(api, client, old, f"m{n}", client_msg_id=f"old-{n}")
                                       for n in range(start, start + 22)))
        assert all(r.status_code == 201 for r in batch)
    first = (await messages(api, client, old, limit=1, after_seq=0))[0]
    # when the first message is retried while new messages arrive, in the same batches
    retried, *new = await asyncio.gather(
        send(api, client, old, "changed body", client_msg_id=first["client_msg_id"]),
        send(api, client, old, "newest"), send(api, other_client, fresh, "hello"))
    # then the retry gets the original message back and nothing is stored twice
    assert retried.status_code == 200 and retried.json()["data"] == first
    assert [r.status_code for r in new] == [201, 201]
    assert new[0].json()["data"]["seq"] == 111 and new[1].json()["data"]["seq"] == 1
    stored = [m for page_start in (0, 100) for m in await messages(api, client, old, after_seq=page_start, limit=100)]
    assert [m["seq"] for m in stored] == list(range(1, 112))
    assert len({m["client_msg_id"] for m in stored}) == 111


async def test_each_message_asks_for_a_push_to_the_other_party_in_the_same_commit(booking, rt_async):
    # given a conversation
    api = rt_async[0]
    client, cleaner, conversation_id = await booking()
    # when the client sends a message
    sent = await send(api, client, conversation_id, "Running 5 minutes late")
    assert sent.status_code == 201, sent.text
    # then the outbox holds one push request for the cleaner, naming the conversation and seq
    rows = await push_rows_for(conversation_id)
    assert len(rows) == 1
    assert rows[0].payload["user_ids"] == [cleaner.id]
    assert (rows[0].payload["category"], rows[0].payload["data"]["seq"]) == ("chat", "1")
    assert rows[0].payload["body"] == "Running 5 minutes late"


async def test_a_party_watching_the_conversation_gets_the_message_on_the_socket_and_no_push(
        booking, sockets, rt_api, rt_async):
    # given the cleaner's app open on the conversation (a socket on its presence channel)
    api = rt_async[0]
    client, cleaner, conversation_id = await booking()
    listener, channel = await on_conversation(sockets, rt_api, cleaner, conversation_id, edge=1)
    # and the client's app on it too
    sender, _ = await on_conversation(sockets, rt_api, client, conversation_id)
    # when the client sends a message
    sent = await send(api, client, conversation_id, "Gate code 4321")
    assert sent.status_code == 201, sent.text
    # then it reaches the cleaner's socket, and its push request, held back meanwhile, is
    # withdrawn before its time, so the relay never sends it
    assert (await listener.expect("chat.message", channel))["data"]["body"] == "Gate code 4321"
    assert await held_push_withdrawn(conversation_id)
    # when the cleaner closes the app and the client writes again
    await listener.close()
    assert (await sender.expect("pusher_internal:member_removed", channel))["data"]["user_id"] == cleaner.id
    again = await send(api, client, conversation_id, "Did you get in?")
    assert again.status_code == 201, again.text
    # then this one keeps its push request to the cleaner, past the hold
    rows = await push_rows_for(conversation_id)
    assert [(r.payload["user_ids"], r.payload["data"]["seq"]) for r in rows] == [([cleaner.id], "2")]
    assert rows[0].available_at is not None and rows[0].available_at > rows[0].created_at
    await asyncio.sleep(HOLD_S + 0.5)
    assert [r.payload["data"]["seq"] for r in await push_rows_for(conversation_id)] == ["2"]


HOLD_S = float(REALTIME_ENV.get("SPOTLESS_CHAT_PUSH_HOLD_S", "1.0"))


async def held_push_withdrawn(conversation_id: str) -> bool:
    """Whether the conversation's push request is gone within its hold (it was written held)."""
    deadline = asyncio.get_running_loop().time() + HOLD_S
    while asyncio.get_running_loop().time() < deadline:
        if await push_rows_for(conversation_id) == []:
            return True
        await asyncio.sleep(0.05)
    return False


async def push_rows_for(conversation_id: str) -> list[OutboxEvent]:
    return [row for row in await OutboxEvent.filter(type=str(EventType.PUSH_REQUESTED)).order_by("-id").limit(50)
            if row.payload.get("data", {}).get("route") == f"/conversations/{conversation_id}"]
