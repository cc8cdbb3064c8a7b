"""Pusher's HTTP channel query API, signed as the events API is (edge/realtime/events_api.py):
GET /apps/{app_id}/channels, /channels/{channel_name} and /channels/{channel_name}/users, as
Pusher's server libraries (`channels_info`, `channel_info`, `users_info`) and Laravel call them.

Handlers only parse, check (core/channel_queries.py decides what may be asked) and shape; the
counts come from every edge worker and the members from the presence-channel shards
(edge/realtime/census.py). Nothing here is on a message's path.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sanic_ext import openapi

from core.channel_queries import (
    InfoAttribute,
    channel_info,
    check_channel_info,
    check_list_info,
    check_prefix,
    check_users_query,
    requested_info,
)
from edge.realtime.census import Census
from edge.realtime.events_api import signed_app, signed_query
from edge.responses import PusherChannel, PusherChannels, PusherUsers
from edge.responses import json_response as documented_json

bp = Blueprint("realtime_channels_api", url_prefix="/apps")

INFO_DESCRIPTION = ("comma-separated attributes to answer for each channel: subscription_count "
                    "(sockets), user_count (distinct users; presence channels only)")


def _census(request: Request) -> Census:
    census: Census = request.app.ctx.realtime.census
    return census


def _info(request: Request) -> frozenset[InfoAttribute]:
    return requested_info(request.args.get("info"))


@bp.get("/<app_id>/channels")
@openapi.definition(summary="Pusher HTTP API: the app's occupied channels (signed)", tag="realtime")
@openapi.parameter("filter_by_prefix", str, "query",
                   description="only channels whose names start with this; presence- to ask user_count")
@openapi.parameter("info", str, "query", description=INFO_DESCRIPTION)
@signed_query
@openapi.response(200, documented_json(PusherChannels), "every channel with a subscriber on any edge worker")
async def list_channels(request: Request, app_id: str) -> HTTPResponse:
    app = signed_app(request, app_id)
    info = _info(request)
    prefix = check_prefix(request.args.get("filter_by_prefix") or "")
    check_list_info(info, prefix)
    return json_response({"channels": await _census(request).describe(app.id, info, prefix=prefix)})


@bp.get("/<app_id>/channels/<channel_name>")
@openapi.definition(summary="Pusher HTTP API: one channel's state (signed)", tag="realtime")
@openapi.parameter("info", str, "query", description=INFO_DESCRIPTION)
@signed_query
@openapi.response(200, documented_json(PusherChannel), "whether anyone is subscribed, and what `info` asked")
async def show_channel(request: Request, app_id: str, channel_name: str) -> HTTPResponse:
    app = signed_app(request, app_id)
    info = _info(request)
    check_channel_info(info, channel_name)
    census = _census(request)
    subscriptions = (await census.counts(app.id, channels=[channel_name])).get(channel_name, 0)
    users = (await census.user_counts(app.id, [channel_name])) if InfoAttribute.USER_COUNT in info else {}
    return json_response({"occupied": subscriptions > 0,
                          **channel_info(info, channel_name, subscriptions=subscriptions, users=users)})


@bp.get("/<app_id>/channels/<channel_name>/users")
@openapi.definition(summary="Pusher HTTP API: a presence channel's users (signed)", tag="realtime")
@signed_query
@openapi.response(200, documented_json(PusherUsers), "the users subscribed, each once")
async def channel_users(request: Request, app_id: str, channel_name: str) -> HTTPResponse:
    app = signed_app(request, app_id)
    check_users_query(channel_name)
    users = await _census(request).users(app.id, channel_name)
    return json_response({"users": [{"id": user_id} for user_id in users]})
