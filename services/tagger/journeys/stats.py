"""A journey's measured lift: treated against holdout, intent-to-treat, with 95% intervals.

Every entrant counts in its group whether or not an email went out (holdout entrants never get
one; treated ones may have exited or lacked consent). Methods, chosen to behave at small-store
sizes and at zero conversions:
- conversion rate per group with a Wilson score interval;
- absolute lift (difference of rates) with Newcombe's hybrid score interval (method 10 of
  Newcombe 1998): it stays inside [-1, 1], is defined with zero conversions in either group,
  and keeps near-nominal coverage where the Wald interval collapses;
- relative lift (rate ratio - 1) with the Katz log interval; None when either group has no
  conversion, where the ratio or its logarithm is undefined;
- revenue per entrant, its difference and the incremental revenue (difference x treated
  entrants) with a normal (Welch) interval from each group's sum of squares;
- the minimum detectable absolute effect at 80% power, two-sided 5%, at the current sizes.
The statistics are computed in float; money arrives and leaves as Decimal, rounded to cents.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from statistics import NormalDist

CONFIDENCE = 0.95
POWER = 0.8
Z = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2)  # 1.959963984540054
Z_POWER = NormalDist().inv_cdf(POWER)  # 0.8416212335729143
CENT = Decimal("0.01")


@dataclass(frozen=True)
class GroupCounts:
    """One group's totals. `sent` is emails sent (treated) or suppressed (holdout: would have
    been sent); `converted` the entrants with an order within the conversion window; `revenue`
    the sum over entrants of their in-window order totals, `revenue_squares` the sum of each
    entrant's total squared (for the variance)."""

    entered: int
    sent: int = 0
    deferred: int = 0
    exited: int = 0
    converted: int = 0
    revenue: Decimal = Decimal(0)
    revenue_squares: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for name in ("entered", "sent", "deferred", "exited", "converted"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.converted > self.entered:
            raise ValueError("converted must not exceed entered")
        if self.revenue < 0 or self.revenue_squares < 0:
            raise ValueError("revenue and revenue_squares must not be negative")


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class MoneyEstimate:
    """A money estimate in cents; the interval is None where it cannot be estimated yet."""

    value: Decimal
    low: Decimal | None
    high: Decimal | None


@dataclass(frozen=True)
class GroupStats:
    """One group as reported."""

    entered: int
    sent: int
    deferred: int
    exited: int
    converted: int
    conversion_rate: Estimate | None
    revenue: Decimal
    revenue_per_entrant: Decimal | None


@dataclass(frozen=True)
class LiftReport:
    """Treated against holdout; None wherever the data cannot support the figure yet."""

    treated: GroupStats
    holdout: GroupStats
    absolute_lift: Estimate | None
    relative_lift: Estimate | None
    revenue_per_entrant_lift: MoneyEstimate | None
    incremental_revenue: MoneyEstimate | None
    minimum_detectable_effect: float | None
    minimum_detectable_revenue_per_entrant: Decimal | None


def wilson_interval(successes: int, n: int, z: float = Z) -> Estimate:
    """The rate successes/n with its Wilson score interval."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError("need 0 <= successes <= n and n > 0")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0 and n the limits are exactly 0 and 1; the formula leaves rounding dust there.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Estimate(p, low, high)


def difference_of_rates(x1: int, n1: int, x2: int, n2: int, z: float = Z) -> Estimate:
    """x1/n1 - x2/n2 with Newcombe's hybrid score interval."""
    first, second = wilson_interval(x1, n1, z), wilson_interval(x2, n2, z)
    difference = first.value - second.value
    below = math.hypot(first.value - first.low, second.high - second.value)
    above = math.hypot(first.high - first.value, second.value - second.low)
    return Estimate(difference, difference - below, difference + above)


def relative_lift(x1: int, n1: int, x2: int, n2: int, z: float = Z) -> Estimate | None:
    """(x1/n1) / (x2/n2) - 1 with the Katz log interval; None when either count is zero."""
    if x1 <= 0 or x2 <= 0 or n1 <= 0 or n2 <= 0:
        return None
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    log_ratio = math.log(ratio)
    return Estimate(ratio - 1, math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1)


def minimum_detectable_effect(
    n1: int, n2: int, rate: float, z: float = Z, z_power: float = Z_POWER
) -> float | None:
    """The smallest absolute difference of rates a two-sided test at these sizes detects with
    the given power, around a baseline rate; None when a size is zero or the rate is 0 or 1."""
    if n1 <= 0 or n2 <= 0 or not 0 < rate < 1:
        return None
    return (z + z_power) * math.sqrt(rate * (1 - rate) * (1 / n1 + 1 / n2))


def revenue_moments(values: Iterable[Decimal]) -> tuple[Decimal, Decimal]:
    """(sum, sum of squares) of per-entrant revenues, as GroupCounts wants them."""
    total, squares = Decimal(0), Decimal(0)
    with localcontext() as context:
        context.prec = 60
        for value in values:
            total += value
            squares += value * value
    return total, squares


def lift_report(treated: GroupCounts, holdout: GroupCounts) -> LiftReport:
    """Every figure of `GET /v1/journeys/{id}/stats` from the two groups' totals."""
    both = treated.entered > 0 and holdout.entered > 0
    absolute = relative = None
    mde = None
    if both:
        absolute = difference_of_rates(
            treated.converted, treated.entered, holdout.converted, holdout.entered
        )
        relative = relative_lift(
            treated.converted, treated.entered, holdout.converted, holdout.entered
        )
        pooled = (treated.converted + holdout.converted) / (treated.entered + holdout.entered)
        mde = minimum_detectable_effect(treated.entered, holdout.entered, pooled)
    revenue_lift = _revenue_difference(treated, holdout, 1) if both else None
    incremental = _revenue_difference(treated, holdout, treated.entered) if both else None
    return LiftReport(
        treated=_group(treated),
        holdout=_group(holdout),
        absolute_lift=absolute,
        relative_lift=relative,
        revenue_per_entrant_lift=revenue_lift,
        incremental_revenue=incremental,
        minimum_detectable_effect=mde,
        minimum_detectable_revenue_per_entrant=_revenue_mde(treated, holdout) if both else None,
    )


def cents(value: Decimal | float) -> Decimal:
    """Money rounded to cents, half to even."""
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_EVEN)


def _group(counts: GroupCounts) -> GroupStats:
    rate = wilson_interval(counts.converted, counts.entered) if counts.entered else None
    per_entrant = None
    if counts.entered:
        with localcontext() as context:
            context.prec = 60
            per_entrant = cents(counts.revenue / counts.entered)
    return GroupStats(
        entered=counts.entered,
        sent=counts.sent,
        deferred=counts.deferred,
        exited=counts.exited,
        converted=counts.converted,
        conversion_rate=rate,
        revenue=cents(counts.revenue),
        revenue_per_entrant=per_entrant,
    )


def _variance(counts: GroupCounts) -> Decimal | None:
    """The sample variance of per-entrant revenue, exact in Decimal; None below 2 entrants."""
    if counts.entered < 2:
        return None
    with localcontext() as context:
        context.prec = 60
        n = Decimal(counts.entered)
        variance = (counts.revenue_squares - counts.revenue * counts.revenue / n) / (n - 1)
    if variance < 0:
        raise ValueError("revenue_squares is too small for revenue: not per-entrant sums")
    return variance


def _standard_error(treated: GroupCounts, holdout: GroupCounts) -> float | None:
    variances = _variance(treated), _variance(holdout)
    if variances[0] is None or variances[1] is None:
        return None
    se = math.sqrt(float(variances[0]) / treated.entered + float(variances[1]) / holdout.entered)
    return se if se > 0 else None


def _revenue_difference(treated: GroupCounts, holdout: GroupCounts, times: int) -> MoneyEstimate:
    """(treated - holdout revenue per entrant) x times, with its normal interval."""
    with localcontext() as context:
        context.prec = 60
        difference = treated.revenue / treated.entered - holdout.revenue / holdout.entered
        scaled = difference * times
    se = _standard_error(treated, holdout)
    if se is None:
        return MoneyEstimate(cents(scaled), None, None)
    centre, half = float(difference), Z * se
    return MoneyEstimate(
        cents(scaled), cents((centre - half) * times), cents((centre + half) * times)
    )


def _revenue_mde(treated: GroupCounts, holdout: GroupCounts) -> Decimal | None:
    se = _standard_error(treated, holdout)
    return None if se is None else cents((Z + Z_POWER) * se)
