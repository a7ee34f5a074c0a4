"""Conditions on whole-day variables (days_since_*) as ranges of integers.

A day count d is an integer, so NumericType's EPSILON comparisons against any threshold c
reduce exactly to integer bounds: d > c + EPSILON <=> d >= floor(c + EPSILON) + 1, and so on.
The SQL compiler compares timestamps against those bounds, the scheduler finds when they flip.
"""

import math
from dataclasses import dataclass

from services.segmenter.domain.rules.operators import EPSILON, to_decimal


@dataclass(frozen=True)
class DayRange:
    """True for start <= d < stop (None: unbounded); inside=False means the complement."""

    start: int | None
    stop: int | None
    inside: bool = True

    def contains(self, days: int) -> bool:
        """Whether a customer d days past the anchor satisfies the condition."""
        within = (self.start is None or days >= self.start) and (
            self.stop is None or days < self.stop
        )
        return within == self.inside

    def boundaries(self) -> list[int]:
        """Day counts at which the truth changes; none when it is constant."""
        if self.start is not None and self.stop is not None and self.start >= self.stop:
            return []
        return [day for day in (self.start, self.stop) if day is not None]


def _lowest_above(threshold: object) -> int:
    # Smallest integer d with d > threshold + EPSILON.
    return math.floor(to_decimal(threshold) + EPSILON) + 1


def _lowest_at_least(threshold: object) -> int:
    # Smallest integer d with d >= threshold - EPSILON.
    return math.ceil(to_decimal(threshold) - EPSILON)


def day_range(operator: str, value: object) -> DayRange | None:
    """The integer range a numeric operator selects; None for is_known / is_unknown."""
    if operator == "greater_than":
        return DayRange(_lowest_above(value), None)
    if operator == "greater_than_or_equal_to":
        return DayRange(_lowest_at_least(value), None)
    if operator == "less_than":
        return DayRange(None, _lowest_at_least(value))
    if operator == "less_than_or_equal_to":
        return DayRange(None, _lowest_above(value))
    if operator in ("equal_to", "not_equal_to"):
        return DayRange(_lowest_at_least(value), _lowest_above(value), operator == "equal_to")
    if operator == "between":
        assert isinstance(value, list | tuple)
        low, high = value
        return DayRange(_lowest_at_least(low), _lowest_above(high))
    if operator in ("is_known", "is_unknown"):
        return None
    raise ValueError(f"no day range for operator {operator!r}")
