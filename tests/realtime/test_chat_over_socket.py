"""Chat sends over the socket (`client-chat-message` on the conversation's presence channel):
the same shard path as REST, answered to the sender alone, refused clearly when malformed."""

from __future__ import annotations

from typing import Any

import ray

from core.clock import utcnow
from core.realtime import shard_of_conversation
from core.settings import Settings
from storage.models import User
from tests.realtime.conftest import REALTIME_ENV, auth_for, on_conversation, unique
from tests.realtime.test_chat import messages, push_rows_for


async def test_a_message_sent_over_the_socket_is_acknowledged_with_its_seq_and_reaches_the_other_party(
        booking, sockets, rt_api, rt_async):
    # given both parties on the conversation channel, on different edge workers
    client, cleaner, conversation_id = await booking()
    client_sock, channel = await on_conversation(sockets, rt_api, client, conversation_id, edge=0)
    cleaner_sock, _ = await on_conversation(sockets, rt_api, cleaner, conversation_id, edge=1)
    # when the client sends twice over the socket, the second time a retry of the first
    await client_sock.send("client-chat-message", {"client_msg_id": "s-1", "body": " On my way? "}, channel=channel)
    first = (await client_sock.expect("chat.sent", channel))["data"]
    await client_sock.send("client-chat-message", {"client_msg_id": "s-1", "body": " On my way? "}, channel=channel)
    again = (await client_sock.expect("chat.sent", channel))["data"]
    # then the sender got the seq, the retry the same one, and the cleaner the message once
    assert first == {"client_msg_id": "s-1", "seq": 1, "created": True}
    assert again == {"client_msg_id": "s-1", "seq": 1, "created": False}
    pushed = (await cleaner_sock.expect("chat.message", channel))["data"]
    assert (pushed["seq"], pushed["body"], pushed["sender_id"]) == (1, "On my way?", client.id)
    await cleaner_sock.nothing("chat.message", within=0.7)
    await cleaner_sock.nothing("chat.sent", within=0.1)  # the answer is the sender's alone
    await cleaner_sock.nothing("client-chat-message", within=0.1)  # the event is never fanned out
    # and the REST history holds it, in order with REST sends
    sent = await rt_async[0].post(f"/api/v1/conversations/{conversation_id}/messages", headers=cleaner.auth,
                                  json={"client_msg_id": unique("r-"), "body": "Yes, 10 minutes"})
    assert sent.status_code == 201 and sent.json()["data"]["seq"] == 2
    assert [m["seq"] for m in await messages(rt_async[0], client, conversation_id)] == [1, 2]


async def test_a_send_the_shard_refuses_is_answered_to_the_sender_with_the_problem(booking, sockets, rt_api):
    # given the cleaner on the conversation channel
    _, cleaner, conversation_id = await booking()
    sock, channel = await on_conversation(sockets, rt_api, cleaner, conversation_id)
    # when they send an empty message without an attachment
    await sock.send("client-chat-message", {"client_msg_id": "e-1", "body": "   "}, channel=channel)
    # then they hear why, with the same code the REST API gives, and nothing was stored
    failed = (await sock.expect("chat.send_failed", channel))["data"]
    assert failed["client_msg_id"] == "e-1" and failed["status"] == 422 and failed["detail"]
    await sock.nothing("chat.message", within=0.5)


async def test_malformed_or_misplaced_socket_sends_get_the_client_event_error(booking, sockets, rt_api, party):
    # given a party on the conversation channel and on their own private channel
    client, _, conversation_id = await booking()
    sock, channel = await on_conversation(sockets, rt_api, client, conversation_id)
    own = f"private-user.{client.id}"
    await sock.subscribe(own, auth_for(rt_api, client, sock.socket_id, own))
    # when they send without a usable client_msg_id, or on a channel that is not a conversation
    bad = [({"body": "hi"}, channel), ({"client_msg_id": 7, "body": "hi"}, channel), ("just text", channel),
           ({"client_msg_id": "x", "body": "hi"}, own)]
    for data, where in bad:
        await sock.send("client-chat-message", data, channel=where)
        # then each gets pusher:error 4301 and the socket stays open
        error = await sock.expect("pusher:error")
        assert error["data"]["code"] == 4301, error
    await sock.nothing("chat.sent", within=0.3)
    assert await messages_count(rt_api, client, conversation_id) == 0


async def test_a_malformed_send_named_by_its_client_msg_id_fails_as_rest_would(booking, sockets, rt_api):
    # given a party on the conversation channel
    client, _, conversation_id = await booking()
    sock, channel = await on_conversation(sockets, rt_api, client, conversation_id)
    # when sends the app can tell apart by their client_msg_id are malformed
    for number, data in enumerate([{"body": 5}, {"body": "hi", "admin": True}, {"body": "hi", "attachment_id": 5}]):
        await sock.send("client-chat-message", {"client_msg_id": f"m-{number}", **data}, channel=channel)
        # then each fails with the REST API's answer (422, invalid), named by its client_msg_id
        failed = (await sock.expect("chat.send_failed", channel))["data"]
        assert (failed["client_msg_id"], failed["status"], failed["code"]) == (f"m-{number}", 422, "invalid")
        assert failed["detail"]
    await sock.nothing("chat.sent", within=0.3)
    assert await messages_count(rt_api, client, conversation_id) == 0


async def messages_count(rt_api, account, conversation_id: str) -> int:
    response = rt_api.get(f"/api/v1/conversations/{conversation_id}/messages", headers=account.auth)
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


async def test_a_suspended_party_can_no_longer_send_over_a_socket_it_opened_before(booking, sockets, rt_api):
    # given the client on the conversation channel, then suspended by staff
    client, _, conversation_id = await booking()
    sock, channel = await on_conversation(sockets, rt_api, client, conversation_id)
    await User.filter(id=client.id).update(suspended_at=utcnow())
    # when they send over the socket they opened before
    await sock.send("client-chat-message", {"client_msg_id": "late", "body": "still here?"}, channel=channel)
    # then the send is refused as unauthenticated and nothing is stored
    failed = (await sock.expect("chat.send_failed", channel))["data"]
    assert (failed["status"], failed["code"]) == (401, "account_suspended")
    await sock.nothing("chat.message", within=0.5)


async def test_one_shard_batch_refuses_a_suspended_senders_messages_and_writes_the_others_gaplessly(
        booking, rt_async, settings):
    # given two conversations, the cleaner of the first suspended meanwhile
    client, cleaner, first = await booking()
    _, other_cleaner, second = await booking()
    await User.filter(id=cleaner.id).update(suspended_at=utcnow())
    # when one batch (one Ray call per shard) carries both parties' messages in both conversations
    batch = [(first, client.id, "q-1", "are you coming?"), (first, cleaner.id, "q-2", "yes"),
             (first, client.id, "q-3", "great"), (second, other_cleaner.id, "q-4", "hello")]
    results = await send_in_one_batch(settings, batch)
    # then the suspended sender's message is refused and the others are written with gapless seqs
    assert results[1] == {"error": "suspended"}
    assert [(r["message"]["seq"], r["created"]) for r in (results[0], results[2], results[3])] == [
        (1, True), (2, True), (1, True)]
    listed = await rt_async[0].get(f"/api/v1/conversations/{first}/messages", headers=client.auth)
    assert [(m["seq"], m["client_msg_id"]) for m in listed.json()["data"]] == [(1, "q-1"), (2, "q-3")]
    # and a push request exists for the written messages only (the suspended one wrote none)
    assert sorted(r.payload["data"]["seq"] for r in await push_rows_for(first)) == ["1", "2"]


async def send_in_one_batch(settings: Settings, items: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """Send items straight to their shards, one Ray call per shard; results in the items' order."""
    count = int(REALTIME_ENV["SPOTLESS_CONVERSATION_SHARDS"])
    by_shard: dict[int, list[int]] = {}
    for index, (conversation_id, *_) in enumerate(items):
        by_shard.setdefault(shard_of_conversation(conversation_id, count), []).append(index)
    results: list[dict[str, Any]] = [{}] * len(items)
    for shard, indexes in by_shard.items():
        actor = ray.get_actor(f"conversations-{shard}-of-{count}", namespace=settings.ray_namespace)
        answers = await actor.send.remote([(*items[i], None) for i in indexes])
        for index, answer in zip(indexes, answers, strict=True):
            results[index] = answer
    return results
