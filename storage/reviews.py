"""Review actions: a client reviews a completed booking, its cleaner replies, staff hide or
restore a review, and the cleaner's public list.

The rules are core.reviews'. Every write is one transaction with its audit row (and outbox
event for what the parties should hear about). The cleaner's rating (`cleaner_profiles.rating_avg`
and `rating_count`, which search ranks by) is recounted from the visible reviews in the same
transaction, under the profile's row lock, so concurrent reviews of one cleaner cannot leave a
stale aggregate.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from core.accounts import Role
from core.bookings import check_reason
from core.clock import utcnow
from core.errors import Conflict, Forbidden, NotFound
from core.events import EventType
from core.reviews import (
    ReviewError,
    check_may_reply,
    check_may_review,
    check_rating,
    check_review_text,
)
from core.settings import Settings
from storage import audit, outbox
from storage.bookings import get_booking
from storage.models import Review, User
from storage.pagination import time_keyset_page


async def recount_rating(cleaner_id: UUID, *, using: BaseDBAsyncClient) -> None:
    """Set the cleaner's rating from their visible reviews; the caller holds the profile lock."""
    await using.execute_query(
        """UPDATE cleaner_profiles p
           SET rating_avg = COALESCE(r.avg, 0), rating_count = r.count
           FROM (SELECT round(avg(rating)::numeric, 2) AS avg, count(*)::int AS count
                 FROM reviews WHERE cleaner_id = $1 AND hidden_at IS NULL) r
           WHERE p.user_id = $1""", [cleaner_id])


async def _lock_profile(cleaner_id: UUID, using: BaseDBAsyncClient) -> None:
    await using.execute_query("SELECT 1 FROM cleaner_profiles WHERE user_id = $1 FOR UPDATE", [cleaner_id])


def _event(review: Review) -> dict[str, Any]:
    return {"review_id": str(review.id), "booking_id": str(review.booking_id), "client_id": str(review.client_id),
            "cleaner_id": str(review.cleaner_id), "rating": review.rating}


async def review_booking(booking_id: UUID, *, actor: User, rating: object, text: str, settings: Settings) -> Review:
    """The booking's client rates the finished work, once."""
    stars = check_rating(rating)
    kept = check_review_text(text, field="text", max_chars=settings.review_max_chars, required=False)
    booking, party = await get_booking(actor=actor, booking_id=booking_id)  # NotFound for strangers
    check_may_review(party=party, state=booking.state,
                     already_reviewed=await Review.filter(booking_id=booking.id).exists())
    try:
        async with in_transaction() as tx:
            await _lock_profile(booking.cleaner_id, tx)
            review = await Review.create(booking_id=booking.id, client_id=booking.client_id,
                                         cleaner_id=booking.cleaner_id, rating=stars, text=kept, using_db=tx)
            await recount_rating(booking.cleaner_id, using=tx)
            await audit.record(actor_id=actor.id, action="review.posted", entity_type="review", entity_id=review.id,
                               after={"booking_id": str(booking.id), "rating": stars}, using=tx)
            await outbox.enqueue(EventType.REVIEW_POSTED, _event(review), using=tx)
    except IntegrityError:  # a second review raced the first past the check
        raise Conflict("this booking has been reviewed already", code=ReviewError.ALREADY_REVIEWED) from None
    return review


async def reply_to_review(booking_id: UUID, *, actor: User, text: str, settings: Settings) -> Review:
    """The booking's cleaner answers its review, once."""
    kept = check_review_text(text, field="text", max_chars=settings.review_max_chars, required=True)
    booking, party = await get_booking(actor=actor, booking_id=booking_id)
    check_may_reply(party=party, already_replied=False)
    async with in_transaction() as tx:
        review = await Review.filter(booking_id=booking.id).using_db(tx).select_for_update().first()
        if review is None:
            raise NotFound("this booking has no review")
        check_may_reply(party=party, already_replied=review.reply is not None)
        review.reply, review.replied_at = kept, utcnow()
        await review.save(update_fields=["reply", "replied_at", "updated_at"], using_db=tx)
        await audit.record(actor_id=actor.id, action="review.replied", entity_type="review", entity_id=review.id,
                           after={"reply": kept}, using=tx)
        await outbox.enqueue(EventType.REVIEW_REPLIED, _event(review), using=tx)
    return review


async def review_of(booking_id: UUID, *, actor: User) -> Review:
    """A booking's review, for its parties and staff (hidden or not)."""
    booking, _ = await get_booking(actor=actor, booking_id=booking_id)
    review = await Review.get_or_none(booking_id=booking.id)
    if review is None:
        raise NotFound("this booking has no review")
    return review


async def set_review_hidden(review_id: UUID, *, actor: User, hidden: bool, reason: str = "") -> Review:
    """Staff take a review out of public view (and out of the rating), or put it back."""
    if actor.role != Role.ADMIN:
        raise Forbidden("only staff moderate reviews")
    kept = check_reason(reason, required=hidden)
    async with in_transaction() as tx:
        review = await Review.filter(id=review_id).using_db(tx).first()
        if review is None:
            raise NotFound("no such review")
        await _lock_profile(review.cleaner_id, tx)
        review = await Review.filter(id=review_id).using_db(tx).select_for_update().get()
        if (review.hidden_at is not None) == hidden:
            return review  # nothing to change
        before = {"hidden_at": review.hidden_at.isoformat() if review.hidden_at else None,
                  "hidden_reason": review.hidden_reason}
        review.update_from_dict({"hidden_at": utcnow(), "hidden_reason": kept} if hidden
                                else {"hidden_at": None, "hidden_reason": None})
        await review.save(update_fields=["hidden_at", "hidden_reason", "updated_at"], using_db=tx)
        await recount_rating(review.cleaner_id, using=tx)
        await audit.record(actor_id=actor.id, action="review.hidden" if hidden else "review.restored",
                           entity_type="review", entity_id=review.id, before=before,
                           after={"hidden_at": review.hidden_at.isoformat() if review.hidden_at else None,
                                  "hidden_reason": review.hidden_reason}, using=tx)
    return review


async def list_cleaner_reviews(cleaner_id: UUID, *, cursor: str | None,
                               limit: int) -> tuple[list[Review], str | None]:
    """A cleaner's visible reviews, newest first, a page at a time."""
    query = Review.filter(cleaner_id=cleaner_id, hidden_at=None)
    return await time_keyset_page(query, field="created_at", cursor=cursor, limit=limit, newest_first=True)

