"""Pusher's channel query API: what a query may ask for, and how the edge workers' counts become
its answer. Pure, no I/O; the edge gathers the counts (edge/realtime/census.py).

A channel is occupied while at least one socket, on any edge worker, is subscribed to it.
`info` asks for attributes, comma-separated, as Pusher's server libraries send them:
- `subscription_count`: the sockets subscribed, on every kind of channel. Pusher serves it only
  when an app enables it; here it is always on, since the counts are gathered anyway.
- `user_count`: the distinct users of a presence channel (one user on two devices counts once).
  A list of channels may ask for it only when `filter_by_prefix` limits it to presence channels,
  and one channel only when it is a presence channel; otherwise the query is refused with a 400,
  as Pusher refuses it.
Anything else in `info` is refused with a 400 naming it, rather than silently answered without.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from core.channels import MAX_CHANNEL_NAME_LENGTH, ChannelKind, channel_kind
from core.errors import Invalid, SpotlessError

PRESENCE_PREFIX = "presence-"


class InfoAttribute(StrEnum):
    USER_COUNT = "user_count"
    SUBSCRIPTION_COUNT = "subscription_count"


class ChannelQueryError(StrEnum):
    INFO_NOT_ALLOWED = "info_not_allowed"
    NOT_A_PRESENCE_CHANNEL = "not_a_presence_channel"


class QueryRefused(SpotlessError):
    """Pusher answers 400 to a query it cannot answer as asked; its server libraries expect it."""

    status = 400
    code = ChannelQueryError.INFO_NOT_ALLOWED
    title = "The channel query cannot be answered as asked"


def requested_info(raw: str | None) -> frozenset[InfoAttribute]:
    """The attributes a comma-separated `info` asks for; QueryRefused naming any unknown one."""
    names = {name.strip() for name in (raw or "").split(",")} - {""}
    unknown = sorted(names - set(InfoAttribute))
    if unknown:
        raise QueryRefused(f"info may list {', '.join(InfoAttribute)}; not {', '.join(unknown)}")
    return frozenset(InfoAttribute(name) for name in names)


def check_prefix(prefix: str) -> str:
    """`filter_by_prefix` as given; Invalid when no channel name could start with it."""
    if len(prefix) > MAX_CHANNEL_NAME_LENGTH:
        raise Invalid(f"must be at most {MAX_CHANNEL_NAME_LENGTH} characters", field="filter_by_prefix")
    return prefix


def check_list_info(info: frozenset[InfoAttribute], prefix: str) -> None:
    """A list of channels may count users only when it lists presence channels alone."""
    if InfoAttribute.USER_COUNT in info and not prefix.startswith(PRESENCE_PREFIX):
        raise QueryRefused(f"info=user_count needs filter_by_prefix={PRESENCE_PREFIX}: only presence "
                           "channels have users")


def check_channel_info(info: frozenset[InfoAttribute], channel: str) -> ChannelKind:
    """The channel's kind, once its name and the info asked of it are acceptable."""
    kind = channel_kind(channel)
    if InfoAttribute.USER_COUNT in info and kind is not ChannelKind.PRESENCE:
        raise QueryRefused(f"info=user_count is only for presence channels, not {channel}")
    return kind


def check_users_query(channel: str) -> None:
    """Only a presence channel has users to list."""
    if channel_kind(channel) is not ChannelKind.PRESENCE:
        raise QueryRefused(f"only presence channels have users; {channel} is not one",
                           code=ChannelQueryError.NOT_A_PRESENCE_CHANNEL)


def merge_counts(reports: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """The sockets per occupied channel across workers, from each worker's own counts."""
    total: dict[str, int] = {}
    for report in reports:
        for channel, count in report.items():
            if count > 0:
                total[channel] = total.get(channel, 0) + count
    return total


def channel_info(info: frozenset[InfoAttribute], channel: str, *, subscriptions: int,
                 users: Mapping[str, int]) -> dict[str, int]:
    """The attributes asked for one channel; `users` holds the presence channels' user counts
    (user_count is left out for other channels, which a trigger's `info` may name)."""
    answer: dict[str, int] = {}
    if InfoAttribute.USER_COUNT in info and channel.startswith(PRESENCE_PREFIX):
        answer[InfoAttribute.USER_COUNT.value] = users.get(channel, 0)
    if InfoAttribute.SUBSCRIPTION_COUNT in info:
        answer[InfoAttribute.SUBSCRIPTION_COUNT.value] = subscriptions
    return answer
