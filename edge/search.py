"""GET /api/v1/cleaners/search: verified cleaners who serve a point, free for a window, ranked.

Any signed-in user may search (clients mostly; cleaners check how they appear). Not public,
because results say who is online right now and when they are free, which we do not hand to
anonymous scrapers.

Round trips per request: one Ray call to the point's spatial shard (coalesced with concurrent
searches), at most four SQL queries for all candidates together, one coalesced Ray call per
presence shard for the page's online flags.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from core.availability import is_free
from core.errors import Invalid
from core.pagination import decode_cursor, encode_cursor, parse_limit
from core.reviews import shown_average
from core.search import RankKey, page_after, parse_hours, ranking_rating, window_price_minor
from core.settings import Settings
from edge.auth import authenticated
from edge.responses import SearchPage, json_response
from edge.supply import photo_urls
from edge.validation import RawSchema, paged
from storage.bookings import check_bookable_start
from storage.search import load_candidates
from storage.supply import service_offered_at_all

bp = Blueprint("search", url_prefix="/api/v1")


def _coordinate(request: Request, name: str, bound: float) -> float:
    raw = request.args.get(name)
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not -bound <= value <= bound:
        raise Invalid(f"must be a number between -{bound:g} and {bound:g}", field=name)
    return value


def _start(raw: str) -> datetime:
    try:
        start = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("must be an ISO 8601 date-time with a time zone", field="start") from None
    if start.tzinfo is None:
        raise Invalid("must include a time zone offset, e.g. 2026-05-01T09:00:00Z", field="start")
    # Year 1 or 9999 would overflow when moved to UTC or when the window's hours are added.
    if not 2 <= start.year <= 9998:
        raise Invalid("must be a date-time between years 2 and 9998", field="start")
    return start.astimezone(UTC)


@bp.get("/cleaners/search")
@openapi.definition(summary="Find verified cleaners serving a point, optionally free for a window",
                    tag="search")
@openapi.response(200, json_response(SearchPage), "one page of cleaners, best first")
@openapi.parameter("lat", RawSchema({"type": "number", "minimum": -90, "maximum": 90}), "query",
                   required=True, description="latitude of the point to serve, WGS84")
@openapi.parameter("lng", RawSchema({"type": "number", "minimum": -180, "maximum": 180}), "query",
                   required=True, description="longitude of the point to serve, WGS84")
@openapi.parameter("service", RawSchema({"type": "string", "maxLength": 40}), "query",
                   description="a service id from GET /api/v1/services; omitted or empty: any service")
@openapi.parameter("start", RawSchema({"type": "string", "format": "date-time"}), "query",
                   description="ISO 8601 start of the window, with a time zone; needs hours. Only a start a "
                               "booking could have: on a whole minute, at least the minimum lead from now (an hour "
                               "by default) and within the maximum advance (180 days by default); else a 422 "
                               "naming start, with booking's detail and code")
@openapi.parameter("hours", RawSchema({"type": "number", "minimum": 0.25, "multipleOf": 0.25}), "query",
                   description="length of the window: a multiple of 0.25, at most 12 by default (with start)")
@paged
@authenticated()
async def search_cleaners(request: Request) -> HTTPResponse:
    settings: Settings = request.app.ctx.settings
    lat = _coordinate(request, "lat", 90)
    lng = _coordinate(request, "lng", 180)
    service = request.args.get("service") or None
    if service is not None and len(service) > 40:
        raise Invalid("unknown service", field="service")
    limit = parse_limit(request.args.get("limit"))
    raw_cursor = decode_cursor(request.args.get("cursor"))
    after = RankKey.from_cursor(raw_cursor) if raw_cursor is not None else None
    window = None
    hours = None
    if request.args.get("start"):
        if request.args.get("hours") is None:
            raise Invalid("is required with start", field="hours")
        hours = parse_hours(request.args.get("hours", ""), max_hours=settings.search_max_hours)
        # Exactly the starts a booking accepts, whole minute included: what a user picks is on a
        # whole minute anyway, and a start booking would refuse is better refused here, before
        # the user has chosen a cleaner for it.
        start = check_bookable_start(_start(request.args.get("start", "")), settings=settings)
        window = (start, start + timedelta(minutes=int(hours * 60)))

    covering = await request.app.ctx.spatial.find(lat, lng)
    distance = dict(covering)
    candidates = await load_candidates(list(distance), service=service, window=window)
    if service is not None and not candidates and not await service_offered_at_all(service):
        # Asked only when nothing matched, so a good search pays no extra query.
        raise Invalid("no such service; the catalogue is at GET /api/v1/services", field="service")
    shown = [
        c for c in candidates.values()
        if window is None or is_free(c.calendar.rules, c.calendar.exceptions, c.calendar.busy, time_zone=c.time_zone,
                                     travel_buffer_minutes=c.travel_buffer_minutes,
                                     start=window[0], end=window[1])
    ]
    keys = [RankKey(ranking_rating(c.rating_avg, c.rating_count, prior_mean=settings.search_rating_prior_mean,
                                   prior_weight=settings.search_rating_prior_weight),
                    distance[c.cleaner_id], c.cleaner_id) for c in shown]
    page, resume = page_after(keys, after, limit)
    online = await request.app.ctx.presence.online([shown[i].cleaner_id for i in page])
    items: list[dict[str, Any]] = []
    for i in page:
        c = shown[i]
        price = None
        if service is not None and hours is not None and c.hourly_rate_minor is not None:
            price = {"amount_minor": window_price_minor(c.hourly_rate_minor, hours),
                     "currency": c.currency, "hours": float(hours)}
        items.append({
            "cleaner_id": c.cleaner_id, "name": c.name, "rating_avg": shown_average(c.rating_avg, c.rating_count),
            "rating_count": c.rating_count, "distance_m": round(distance[c.cleaner_id]),
            "hourly_rate_minor": c.hourly_rate_minor, "currency": c.currency,
            "price": price, "online": online[c.cleaner_id], "photo": photo_urls(c.cleaner_id, **c.photo),
        })
    return json({"data": items, "next_cursor": encode_cursor(resume.to_cursor()) if resume else None})
