"""Search rules: the order results come in, the cursor that resumes it, a window's price. Pure.

Order: rating (best first), then distance from the searched point to the representative point
of the cleaner's service area (nearest first), then cleaner id. The area's point, not the live
location, because it is stable: a keyset cursor over a moving key would skip or repeat people
between pages, and a cleaner's home ground is where they travel from between jobs anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from core.errors import Invalid


@dataclass(frozen=True)
class RankKey:
    rating: Decimal
    distance_m: float
    cleaner_id: str

    def sort_tuple(self) -> tuple[Decimal, float, str]:
        return (-self.rating, self.distance_m, self.cleaner_id)

    def to_cursor(self) -> list[Any]:
        return [str(self.rating), self.distance_m, self.cleaner_id]

    @classmethod
    def from_cursor(cls, raw: Any) -> RankKey:
        try:
            rating, distance, cleaner_id = raw
            return cls(Decimal(str(rating)), float(distance), str(cleaner_id))
        except (TypeError, ValueError, InvalidOperation):
            raise Invalid("cursor is not one this API issued", field="cursor") from None


def ranking_rating(average: Decimal, count: int, *, prior_mean: float, prior_weight: int) -> Decimal:
    """The rating search ranks by: the average of `count` reviews, pulled towards `prior_mean` as if
    there were `prior_weight` more reviews of exactly that (a Bayesian average). Few reviews move a
    cleaner little; many reviews speak for themselves; no reviews rank at the prior."""
    if count <= 0 and prior_weight <= 0:
        return Decimal(0)
    total = Decimal(str(prior_mean)) * prior_weight + average * count
    return (total / (prior_weight + count)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def page_after(keys: Sequence[RankKey], after: RankKey | None, limit: int) -> tuple[list[int], RankKey | None]:
    """Indexes (into `keys`) of the next page in rank order, and the key to resume after."""
    order = sorted(range(len(keys)), key=lambda i: keys[i].sort_tuple())
    if after is not None:
        order = [i for i in order if keys[i].sort_tuple() > after.sort_tuple()]
    page = order[:limit]
    return page, keys[page[-1]] if len(order) > limit else None


def parse_hours(raw: str, *, max_hours: int) -> Decimal:
    """Booked hours: a multiple of a quarter hour, more than zero and at most `max_hours`."""
    try:
        hours = Decimal(raw)
    except InvalidOperation:
        raise Invalid("must be a number of hours", field="hours") from None
    if not hours.is_finite() or hours <= 0 or hours > max_hours or (hours * 4) % 1 != 0:
        raise Invalid(f"must be a multiple of 0.25 between 0.25 and {max_hours}", field="hours")
    return hours


def window_price_minor(hourly_rate_minor: int, hours: Decimal) -> int:
    """Price of a window in minor units, rounded half up to the nearest minor unit."""
    return int((Decimal(hourly_rate_minor) * hours).quantize(Decimal(1), rounding=ROUND_HALF_UP))
