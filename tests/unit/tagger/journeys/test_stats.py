"""Lift statistics against published values and formulas computed independently here."""

import math
import random
from decimal import Decimal

import pytest

from services.tagger.journeys.stats import (
    GroupCounts,
    cents,
    difference_of_rates,
    lift_report,
    minimum_detectable_effect,
    relative_lift,
    revenue_moments,
    wilson_interval,
)

Z = 1.959963984540054  # the 97.5th percentile of the standard normal


# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score):
# (x1, n1, x2, n2) -> 95% limits of p1 - p2, as published to four places.
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "limits"), NEWCOMBE_TABLE_II)
def test_difference_of_rates_matches_newcombes_published_table(
    counts: tuple[int, int, int, int], limits: tuple[float, float]
) -> None:
    x1, n1, x2, n2 = counts
    estimate = difference_of_rates(x1, n1, x2, n2)
    assert estimate.value == pytest.approx(x1 / n1 - x2 / n2)
    assert round(estimate.low, 4) == limits[0]
    assert round(estimate.high, 4) == limits[1]


def test_wilson_interval_with_no_successes_and_textbook_values() -> None:
    # 0/10: the upper limit z^2 / (n + z^2), the lower 0.
    zero = wilson_interval(0, 10)
    assert zero.low == 0.0
    assert zero.high == pytest.approx(Z * Z / (10 + Z * Z))
    # 81/263 (Wilson's own example in Newcombe 1998, Table I): 0.2553 to 0.3662.
    example = wilson_interval(81, 263)
    assert (round(example.low, 4), round(example.high, 4)) == (0.2553, 0.3662)


def test_relative_lift_is_the_katz_log_interval() -> None:
    estimate = relative_lift(30, 300, 20, 300)
    assert estimate is not None
    se = math.sqrt(1 / 30 - 1 / 300 + 1 / 20 - 1 / 300)
    assert estimate.value == pytest.approx(0.5)
    assert estimate.low == pytest.approx(1.5 * math.exp(-Z * se) - 1)
    assert estimate.high == pytest.approx(1.5 * math.exp(Z * se) - 1)
    assert estimate.low < 0 < estimate.high  # 30 vs 20 of 300 is not significant


def test_relative_lift_is_undefined_without_conversions_in_a_group() -> None:
    assert relative_lift(0, 100, 5, 100) is None
    assert relative_lift(5, 100, 0, 100) is None


def test_minimum_detectable_effect_matches_the_sample_size_formula() -> None:
    # The textbook: n per group = (z_a/2 + z_b)^2 * 2p(1-p) / d^2; p = 0.5, d = 0.1 gives 392.4.
    n = (Z + 0.8416212335729143) ** 2 * 2 * 0.25 / 0.01
    assert n == pytest.approx(392.4, abs=0.05)
    assert minimum_detectable_effect(393, 393, 0.5) == pytest.approx(0.1, abs=0.0002)
    # Unequal groups, as with a 10% holdout: 900 and 100 entrants at a 5% rate.
    expected = (Z + 0.8416212335729143) * math.sqrt(0.05 * 0.95 * (1 / 900 + 1 / 100))
    assert minimum_detectable_effect(900, 100, 0.05) == pytest.approx(expected)
    assert minimum_detectable_effect(900, 0, 0.05) is None
    assert minimum_detectable_effect(900, 100, 0.0) is None


def test_newcombe_interval_keeps_its_coverage_at_small_store_sizes() -> None:
    # 150 treated against 17 held out at low rates: the Wald interval would be far off here.
    draw = random.Random(7)
    p1, p2, n1, n2 = 0.08, 0.04, 150, 17
    covered = 0
    trials = 1500
    for _ in range(trials):
        x1 = sum(draw.random() < p1 for _ in range(n1))
        x2 = sum(draw.random() < p2 for _ in range(n2))
        estimate = difference_of_rates(x1, n1, x2, n2)
        covered += estimate.low <= p1 - p2 <= estimate.high
    assert 0.92 <= covered / trials <= 0.995


def test_revenue_difference_and_incremental_revenue_by_hand() -> None:
    treated_values = [Decimal(0), Decimal(0), Decimal(10), Decimal(30)]
    holdout_values = [Decimal(0), Decimal(20)]
    t_sum, t_squares = revenue_moments(treated_values)
    h_sum, h_squares = revenue_moments(holdout_values)
    assert (t_sum, t_squares, h_sum, h_squares) == tuple(map(Decimal, (40, 1000, 20, 400)))
    report = lift_report(
        GroupCounts(entered=4, converted=2, revenue=t_sum, revenue_squares=t_squares),
        GroupCounts(entered=2, converted=1, revenue=h_sum, revenue_squares=h_squares),
    )
    # Means 10 and 10; variances (1000 - 40^2/4)/3 = 200 and (400 - 20^2/2)/1 = 200;
    # standard error sqrt(200/4 + 200/2) = sqrt(150).
    half = Z * math.sqrt(150)
    lift = report.revenue_per_entrant_lift
    assert lift is not None
    assert lift.value == Decimal("0.00")
    assert (lift.low, lift.high) == (cents(-half), cents(half))
    incremental = report.incremental_revenue
    assert incremental is not None
    assert incremental.value == Decimal("0.00")
    assert (incremental.low, incremental.high) == (cents(-half * 4), cents(half * 4))
    assert report.treated.revenue_per_entrant == Decimal("10.00")
    assert report.minimum_detectable_revenue_per_entrant == cents(
        (Z + 0.8416212335729143) * math.sqrt(150)
    )


def test_a_full_report_is_consistent() -> None:
    treated = GroupCounts(
        entered=900,
        sent=2400,
        deferred=120,
        exited=300,
        converted=90,
        revenue=Decimal("5400.50"),
        revenue_squares=Decimal("600000"),
    )
    holdout = GroupCounts(
        entered=100,
        sent=270,
        deferred=10,
        exited=40,
        converted=5,
        revenue=Decimal("250.25"),
        revenue_squares=Decimal("25000"),
    )
    report = lift_report(treated, holdout)
    assert report.treated.conversion_rate is not None
    assert report.treated.conversion_rate.value == pytest.approx(0.1)
    assert (report.treated.sent, report.holdout.deferred) == (2400, 10)
    assert report.absolute_lift is not None
    assert report.absolute_lift.value == pytest.approx(0.05)
    assert report.absolute_lift.low < 0.05 < report.absolute_lift.high
    assert report.relative_lift is not None
    assert report.relative_lift.value == pytest.approx(1.0)
    assert report.treated.revenue_per_entrant == Decimal("6.00")  # 5400.50 / 900 = 6.0006
    assert report.holdout.revenue_per_entrant == Decimal("2.50")
    incremental = report.incremental_revenue
    assert incremental is not None
    # (5400.50/900 - 250.25/100) x 900 = 5400.50 - 2252.25, exactly.
    assert incremental.value == Decimal("3148.25")
    assert incremental.low is not None and incremental.high is not None
    assert incremental.low < incremental.value < incremental.high
    pooled = 95 / 1000
    expected_mde = (Z + 0.8416212335729143) * math.sqrt(pooled * (1 - pooled) * (1 / 900 + 1 / 100))
    assert report.minimum_detectable_effect == pytest.approx(expected_mde)
    assert isinstance(report.treated.revenue, Decimal)


def test_zero_conversions_everywhere_still_reports_what_it_can() -> None:
    report = lift_report(GroupCounts(entered=40), GroupCounts(entered=5))
    assert report.absolute_lift is not None
    assert report.absolute_lift.value == 0.0
    assert report.absolute_lift.low < 0 < report.absolute_lift.high
    assert report.relative_lift is None
    assert report.minimum_detectable_effect is None
    lift = report.revenue_per_entrant_lift
    assert lift is not None
    assert (lift.value, lift.low, lift.high) == (Decimal("0.00"), None, None)


def test_an_empty_group_leaves_the_comparisons_undefined() -> None:
    report = lift_report(GroupCounts(entered=3, converted=1), GroupCounts(entered=0))
    assert report.holdout.conversion_rate is None
    assert report.holdout.revenue_per_entrant is None
    assert report.absolute_lift is None
    assert report.revenue_per_entrant_lift is None
    assert report.incremental_revenue is None
    assert report.minimum_detectable_effect is None


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="converted must not exceed entered"):
        GroupCounts(entered=1, converted=2)
    with pytest.raises(ValueError, match="must not be negative"):
        GroupCounts(entered=-1)
    with pytest.raises(ValueError, match="not per-entrant sums"):
        lift_report(
            GroupCounts(entered=2, revenue=Decimal(10), revenue_squares=Decimal(1)),
            GroupCounts(entered=2),
        )
