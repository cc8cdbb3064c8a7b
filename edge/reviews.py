"""Reviews over REST: a client reviews a completed booking, its cleaner replies, and anyone
reads a cleaner's public reviews. Thin handlers: parse, authorise, call storage.reviews."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from core.errors import NotFound
from core.pagination import parse_limit
from edge.accounts import settings_of
from edge.auth import authenticated, current_session
from edge.responses import ReviewAnswer, ReviewPage, json_response
from edge.staff import parse_uuid
from edge.validation import Body, openapi_body, paged, parse_body
from storage import reviews
from storage.models import CleanerProfile, Review, User

bp = Blueprint("reviews", url_prefix="/api/v1")


class ReviewBody(Body):
    rating: Any = Field(description="whole stars, 1 to 5")
    text: str = Field(default="", max_length=10_000)


class ReplyBody(Body):
    text: str = Field(max_length=10_000)


def review_json(review: Review, *, author: str | None = None, private: bool = False) -> dict[str, Any]:
    """A review as the public sees it (the author by first name); `private` adds what only the
    parties and staff see."""
    body: dict[str, Any] = {
        "id": str(review.id), "rating": review.rating, "text": review.text, "author": author,
        "created_at": review.created_at.isoformat(),
        "reply": {"text": review.reply, "at": review.replied_at.isoformat()} if review.replied_at else None}
    if private:
        body.update(booking_id=str(review.booking_id), cleaner_id=str(review.cleaner_id),
                    hidden=review.hidden_at is not None)
    return body


def first_name(name: str) -> str:
    return (name.split() or [""])[0]


@bp.post("/bookings/<booking_id:str>/review")
@openapi.definition(summary="Rate a completed booking, once (the client who booked it)", body=openapi_body(ReviewBody),
                    tag="reviews")
@openapi.response(201, json_response(ReviewAnswer), "the review")
@authenticated()
async def post_review(request: Request, booking_id: str) -> HTTPResponse:
    body = parse_body(request, ReviewBody)
    user = current_session(request).user
    review = await reviews.review_booking(parse_uuid(booking_id), actor=user, rating=body.rating, text=body.text,
                                          settings=settings_of(request))
    return json({"review": review_json(review, author=first_name(user.name), private=True)}, status=201)


@bp.get("/bookings/<booking_id:str>/review")
@openapi.definition(summary="A booking's review, for its parties", tag="reviews")
@openapi.response(200, json_response(ReviewAnswer), "the review")
@authenticated()
async def read_review(request: Request, booking_id: str) -> HTTPResponse:
    review = await reviews.review_of(parse_uuid(booking_id), actor=current_session(request).user)
    author = await User.get_or_none(id=review.client_id)
    return json({"review": review_json(review, author=first_name(author.name) if author else None, private=True)})


@bp.post("/bookings/<booking_id:str>/review/reply")
@openapi.definition(summary="Answer a booking's review, once (the cleaner who did the work)",
                    body=openapi_body(ReplyBody), tag="reviews")
@openapi.response(200, json_response(ReviewAnswer), "the review with its reply")
@authenticated()
async def reply(request: Request, booking_id: str) -> HTTPResponse:
    body = parse_body(request, ReplyBody)
    review = await reviews.reply_to_review(parse_uuid(booking_id), actor=current_session(request).user,
                                           text=body.text, settings=settings_of(request))
    author = await User.get_or_none(id=review.client_id)
    return json({"review": review_json(review, author=first_name(author.name) if author else None, private=True)})


@bp.get("/cleaners/<cleaner_id:str>/reviews")
@openapi.definition(summary="A cleaner's public reviews, newest first (?cursor=, ?limit=)", tag="reviews")
@openapi.response(200, json_response(ReviewPage), "one page of reviews")
@paged
async def list_for_cleaner(request: Request, cleaner_id: str) -> HTTPResponse:
    cleaner = parse_uuid(cleaner_id)
    limit = parse_limit(request.args.get("limit"))
    if not await CleanerProfile.exists(user_id=cleaner):
        raise NotFound("no such cleaner")
    rows, next_cursor = await reviews.list_cleaner_reviews(cleaner, cursor=request.args.get("cursor"), limit=limit)
    names: dict[UUID, str] = dict(await User.filter(id__in={r.client_id for r in rows}).values_list("id", "name"))
    return json({"data": [review_json(r, author=first_name(names.get(r.client_id, ""))) for r in rows],
                 "next_cursor": next_cursor})
