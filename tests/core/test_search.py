"""The rating search ranks by: a Bayesian average, so few reviews count for little."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.search import ranking_rating


def rank(average: str, count: int, *, mean: float = 4.0, weight: int = 5) -> Decimal:
    return ranking_rating(Decimal(average), count, prior_mean=mean, prior_weight=weight)


def test_one_perfect_review_does_not_outrank_a_hundred_excellent_ones():
    assert rank("5.00", 1) < rank("4.90", 100)
    assert rank("4.90", 100) == Decimal("4.8571")  # (5 x 4.0 + 100 x 4.9) / 105


def test_an_unrated_cleaner_ranks_at_the_prior_above_a_poorly_rated_one():
    assert rank("0", 0) == Decimal("4.0000")
    assert rank("3.20", 40) < rank("0", 0) < rank("4.60", 20)


def test_equal_review_counts_keep_the_order_of_the_averages():
    assert rank("4.20", 3) < rank("4.90", 3)


@pytest.mark.parametrize(("average", "count"), [("4.70", 3), ("2.00", 12), ("0", 0)])
def test_a_weight_of_zero_is_the_raw_average(average, count):
    assert rank(average, count, weight=0) == Decimal(average).quantize(Decimal("0.0001"))
