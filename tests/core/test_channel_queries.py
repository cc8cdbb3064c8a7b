"""What a channel query may ask, and how the workers' counts become its answer."""

from __future__ import annotations

import pytest

from core.channel_queries import (
    InfoAttribute,
    QueryRefused,
    channel_info,
    check_channel_info,
    check_list_info,
    check_prefix,
    check_users_query,
    merge_counts,
    requested_info,
)
from core.channels import ChannelKind
from core.errors import Invalid

BOTH = frozenset(InfoAttribute)


def test_info_is_read_as_pusher_libraries_send_it():
    assert requested_info(None) == requested_info("") == requested_info(" , ") == frozenset()
    assert requested_info("user_count,subscription_count") == BOTH
    assert requested_info(" subscription_count ") == {InfoAttribute.SUBSCRIPTION_COUNT}
    with pytest.raises(QueryRefused, match="cache, occupied") as refused:
        requested_info("occupied,user_count,cache")
    assert refused.value.status == 400 and refused.value.code == "info_not_allowed"


def test_user_count_is_for_presence_channels_only():
    check_list_info(BOTH, "presence-")
    check_list_info(frozenset({InfoAttribute.SUBSCRIPTION_COUNT}), "")
    for prefix in ("", "private-", "presence"):
        with pytest.raises(QueryRefused, match="filter_by_prefix=presence-"):
            check_list_info(BOTH, prefix)
    assert check_channel_info(BOTH, "presence-room") is ChannelKind.PRESENCE
    assert check_channel_info(frozenset({InfoAttribute.SUBSCRIPTION_COUNT}), "lobby") is ChannelKind.PUBLIC
    with pytest.raises(QueryRefused, match="only for presence channels"):
        check_channel_info(BOTH, "private-room")
    check_users_query("presence-room")
    with pytest.raises(QueryRefused) as refused:
        check_users_query("private-room")
    assert refused.value.code == "not_a_presence_channel"


def test_bad_names_and_prefixes_are_invalid():
    with pytest.raises(Invalid) as invalid:
        check_channel_info(frozenset(), "a*b")
    assert invalid.value.code == "invalid_channel"
    assert check_prefix("presence-") == "presence-"
    with pytest.raises(Invalid) as invalid:
        check_prefix("x" * 165)
    assert invalid.value.errors[0].field == "filter_by_prefix"


def test_counts_add_up_across_workers_and_shape_the_answer():
    # given two workers' counts (one with a channel it has just left)
    merged = merge_counts([{"presence-a": 2, "b": 1}, {"presence-a": 1, "c": 0}])
    # then
    assert merged == {"presence-a": 3, "b": 1}
    assert channel_info(BOTH, "presence-a", subscriptions=3, users={"presence-a": 2}) == {
        "user_count": 2, "subscription_count": 3}
    assert channel_info(BOTH, "b", subscriptions=1, users={}) == {"subscription_count": 1}
    assert channel_info(frozenset(), "presence-a", subscriptions=3, users={}) == {}
