"""Live resharding (`spotless actors rebalance`): requests keep being served while shard counts
change, nothing acknowledged is lost, and every process ends up routing by the new layout.

The scenarios themselves live in tests/actors/rebalance_scenarios.py, so the multi-node harness
runs the same ones against a cluster; here they run against the session's local Ray.
"""

from __future__ import annotations

import asyncio

import pytest
import ray
from tortoise import connections

from actors.conversations import ConversationRouter, conversation_shard
from actors.layout import Layouts
from actors.presence import presence_shard
from actors.presence_channels import presence_channel_shard
from actors.rebalance import kill_shards, rebalance
from core.errors import Conflict, Invalid
from core.settings import Settings
from storage import shard_layout
from tests.actors.rebalance_scenarios import (
    conversations_during_rebalance,
    new_conversation,
    own_settings,
    presence_during_rebalance,
    spatial_during_rebalance,
)

pytestmark = pytest.mark.usefixtures("db")


async def test_conversations_keep_every_acknowledged_message_through_2_3_1(settings: Settings) -> None:
    # given senders streaming into six conversations through two routers, one of which never
    # hears the layout announcements; when the shards go 2 -> 3 -> 1 under them
    outcome = await asyncio.wait_for(conversations_during_rebalance(settings, counts=(2, 3, 1)), 180)
    # then (asserted inside) PostgreSQL holds exactly the acknowledged messages, once each, with
    # gapless seqs; every answer was a success or a clean retryable one; the old shards are gone;
    # the router that missed the announcements learned the layout from "moved"; and it was busy
    assert outcome.acked >= 60 and outcome.replays >= 5
    assert all(len(seqs) >= 6 for seqs in outcome.per_conversation.values())


async def test_searches_stay_right_and_a_change_made_mid_switch_is_found(settings: Settings) -> None:
    outcome = await asyncio.wait_for(spatial_during_rebalance(settings, before=2, after=3), 180)
    assert outcome.rounds_during >= 2  # searches really ran while the shards changed


async def test_cleaners_stay_online_and_heartbeats_during_the_change_count(settings: Settings) -> None:
    outcome = await asyncio.wait_for(presence_during_rebalance(settings, before=2, after=3), 120)
    assert outcome.beats_during > 0
    assert outcome.written_on_retire >= outcome.online_before  # the flush loop never ran: retire wrote them


async def test_a_shard_of_a_count_the_layout_does_not_name_never_writes(settings: Settings) -> None:
    # given a conversation whose layout says 2 shards
    s = own_settings(settings, conversation_shards=2)
    cid, client_id, _ = await new_conversation(s)
    router = ConversationRouter(s, layouts=Layouts(s))
    message, _ = await router.send(cid, sender_id=client_id, client_msg_id="first", body="hi")
    try:
        # when a process with stale settings (3 shards) makes its own shard for that conversation
        from core.realtime import shard_of_conversation

        stray = conversation_shard(s, shard_of_conversation(cid, 3), count=3)
        answer = await stray.send.remote([(cid, client_id, "second", "from a stale process", None)])
        # then the shard refuses with "moved" and nothing is written
        assert answer == [{"error": "moved"}]
        again, created = await router.send(cid, sender_id=client_id, client_msg_id="second", body="hi")
        assert created and again["seq"] == message["seq"] + 1
        # and a presence shard of a count its layout does not name takes no heartbeat either
        await shard_layout.read_layout("presence", s.presence_shard_prefix, default_count=2)
        stale_presence = presence_shard(s, 0, count=5)
        assert await stale_presence.heartbeat.remote([(client_id, 51.5, -0.1)]) == "moved"
        # nor does a presence-channel shard of such a count take a member: a second registry
        await shard_layout.read_layout("presence-channels", s.presence_channel_shard_prefix, default_count=2)
        stale_channels = presence_channel_shard(s, 0, count=5)
        assert await stale_channels.join.remote("1", "presence-x", client_id, {}, "1.1", "worker") == "moved"
        assert await stale_channels.heartbeat.remote("worker") == "moved"
    finally:
        kill_shards(s, s.conversation_shard_prefix, 2)
        kill_shards(s, s.conversation_shard_prefix, 3)
        kill_shards(s, s.presence_shard_prefix, 5)
        kill_shards(s, s.presence_channel_shard_prefix, 5)


async def test_a_failed_rebalance_leaves_the_old_shards_serving(settings: Settings) -> None:
    # given a conversation on 2 shards, and a layout that another rebalance moves on meanwhile
    s = own_settings(settings, conversation_shards=2)
    cid, client_id, _ = await new_conversation(s)
    router = ConversationRouter(s, layouts=Layouts(s))
    await router.send(cid, sender_id=client_id, client_msg_id="a", body="before")
    layout = await shard_layout.read_layout("conversations", s.conversation_shard_prefix, default_count=2)
    try:
        # when the commit is refused (the epoch moved under it)
        await shard_layout.begin_change("conversations", s.conversation_shard_prefix, shard_count=5,
                                        default_count=2, changed_by="someone else")
        with pytest.raises(Conflict):
            await shard_layout.commit_change("conversations", s.conversation_shard_prefix,
                                             epoch=layout.epoch + 1, changed_by="test")
        # and a rebalance run with the current count undoes the stray pending change
        [unchanged] = await rebalance(s, {"conversations": 2}, bus=None, changed_by="test", grace_s=0)
        # then the layout is as before and the old shards still take messages
        after = await shard_layout.read_layout("conversations", s.conversation_shard_prefix, default_count=2)
        assert (after.shard_count, after.pending_count, after.epoch) == (2, None, layout.epoch)
        assert unchanged.before == unchanged.after == 2
        message, created = await router.send(cid, sender_id=client_id, client_msg_id="b", body="after")
        assert created and message["seq"] == 2
    finally:
        kill_shards(s, s.conversation_shard_prefix, 2)


async def test_counts_out_of_range_are_refused_before_anything_changes(settings: Settings) -> None:
    s = own_settings(settings)
    with pytest.raises(Invalid):
        await rebalance(s, {"conversations": 0}, bus=None, changed_by="test")
    with pytest.raises(Invalid):
        await rebalance(s, {"presence": 5000}, bus=None, changed_by="test")
    with pytest.raises(Invalid):
        await rebalance(s, {"presence-channels": 0}, bus=None, changed_by="test")
    with pytest.raises(Invalid):
        await rebalance(s, {"bananas": 2}, bus=None, changed_by="test")
    rows = await connections.get("default").execute_query_dict(
        "SELECT count(*) AS n FROM shard_layouts WHERE prefix = $1", [s.conversation_shard_prefix])
    assert rows[0]["n"] == 0
    with pytest.raises(ValueError):
        ray.get_actor(f"{s.conversation_shard_prefix}-0-of-0", namespace=s.ray_namespace)
