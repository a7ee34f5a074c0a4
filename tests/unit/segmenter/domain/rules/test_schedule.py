"""next_flip_at: crafted cases, and an exhaustive grid checked against the engine."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from business_rules.engine import check_conditions_recursively

from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules.schedule import next_flip_at
from services.segmenter.domain.rules.variables import SegmentVariables

ANCHOR = datetime(2025, 6, 1, 8, 30, 15, 123_456, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
D = Decimal


def when(name: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"name": name, "operator": operator, "value": value}


def ordered(at: datetime | None) -> CustomerFacts:
    return CustomerFacts(shop_id=1, customer_id=1, last_order_at=at)


def truth(rule: dict[str, Any], facts: CustomerFacts, at: datetime) -> bool:
    return bool(check_conditions_recursively(rule, SegmentVariables(facts, at)))


@pytest.mark.parametrize(
    ("operator", "value", "now", "flip"),
    [
        # churn risk: > 90 days becomes true on day 91
        ("greater_than", 90, ANCHOR + 50 * DAY + timedelta(hours=3), ANCHOR + 91 * DAY),
        ("greater_than", 90, ANCHOR + 91 * DAY, None),
        ("greater_than", 90, ANCHOR + 91 * DAY - US, ANCHOR + 91 * DAY),
        # new customer: < 30 days stops on day 30
        ("less_than", 30, ANCHOR, ANCHOR + 30 * DAY),
        ("less_than", 30, ANCHOR + 30 * DAY, None),
        ("less_than_or_equal_to", 30, ANCHOR, ANCHOR + 31 * DAY),
        ("greater_than_or_equal_to", 30, ANCHOR, ANCHOR + 30 * DAY),
        # equal_to enters at N and leaves at N + 1
        ("equal_to", 5, ANCHOR + 3 * DAY, ANCHOR + 5 * DAY),
        ("equal_to", 5, ANCHOR + 5 * DAY, ANCHOR + 6 * DAY),
        ("equal_to", 5, ANCHOR + 6 * DAY, None),
        ("not_equal_to", 5, ANCHOR + 5 * DAY + timedelta(hours=23), ANCHOR + 6 * DAY),
        # between [a, b] at a and b + 1
        ("between", [30, 364], ANCHOR + 10 * DAY, ANCHOR + 30 * DAY),
        ("between", [30, 364], ANCHOR + 100 * DAY, ANCHOR + 365 * DAY),
        # EPSILON: thresholds within it of an integer act as that integer
        ("greater_than", D("2.999999"), ANCHOR, ANCHOR + 4 * DAY),
        ("greater_than", D("2.9999989"), ANCHOR, ANCHOR + 3 * DAY),
        ("greater_than", D("3.000001"), ANCHOR, ANCHOR + 4 * DAY),
        ("less_than", D("3.000001"), ANCHOR, ANCHOR + 3 * DAY),
        ("less_than", D("3.0000011"), ANCHOR, ANCHOR + 4 * DAY),
        # other thresholds round to the day the comparison changes
        ("greater_than", D("2.5"), ANCHOR + DAY, ANCHOR + 3 * DAY),
        ("less_than", D("2.5"), ANCHOR + DAY, ANCHOR + 3 * DAY),
        ("equal_to", D("2.5"), ANCHOR, None),
        ("not_equal_to", D("2.5"), ANCHOR, None),
        ("between", [D("2.5"), D("2.7")], ANCHOR, None),
        # no representable moment
        ("greater_than", D("999999999999999"), ANCHOR, None),
        # anchored in the future (clock skew): negative days still count up
        ("greater_than_or_equal_to", 0, ANCHOR - DAY - US, ANCHOR),
    ],
)
def test_flip_moments(operator: str, value: Any, now: datetime, flip: datetime | None) -> None:
    rule = {"all": [when("days_since_last_order", operator, value)]}
    assert next_flip_at(rule, ordered(ANCHOR), now) == flip


def test_nothing_flips_without_an_anchor_or_a_days_condition() -> None:
    days = {"all": [when("days_since_last_order", "greater_than", 90)]}
    assert next_flip_at(days, ordered(None), ANCHOR) is None
    known = {"all": [when("days_since_last_order", "is_known")]}
    assert next_flip_at(known, ordered(ANCHOR), ANCHOR) is None
    no_days = {"all": [when("orders_count", "greater_than", 1), when("tags", "is_empty")]}
    assert next_flip_at(no_days, ordered(ANCHOR), ANCHOR) is None


def test_earliest_over_every_days_condition_in_the_tree() -> None:
    facts = CustomerFacts(
        shop_id=1,
        customer_id=1,
        registered_at=ANCHOR - 100 * DAY,
        last_order_at=ANCHOR,
        last_engaged_at=None,
    )
    rule = {
        "any": [
            when("days_since_last_order", "greater_than", 90),
            {
                "all": [
                    when("orders_count", "greater_than", 0),
                    when("days_since_registration", "less_than", 120),
                    when("days_since_last_engagement", "less_than", 1),
                ]
            },
        ]
    }
    assert next_flip_at(rule, facts, ANCHOR) == ANCHOR - 100 * DAY + 120 * DAY


THRESHOLDS = [-1, 0, 3, D("2.5"), D("2.999999"), D("2.9999989"), D("3.0000005"), D("3.000001")]
RANGES = [[2, 4], [D("2.5"), D("3.5")], [3, 3], [D("3.2"), D("3.4")], [0, 0]]
OPERATORS = [
    "greater_than",
    "greater_than_or_equal_to",
    "less_than",
    "less_than_or_equal_to",
    "equal_to",
    "not_equal_to",
]
GRID = [(op, value) for op in OPERATORS for value in THRESHOLDS] + [
    ("between", pair) for pair in RANGES
]
NOWS = [
    ANCHOR + k * DAY + extra
    for k in range(-2, 7)
    for extra in (-US, timedelta(0), timedelta(hours=12))
]


@pytest.mark.parametrize(("operator", "value"), GRID)
def test_flip_is_exactly_where_the_engine_changes_its_mind(operator: str, value: Any) -> None:
    rule = {"all": [when("days_since_last_order", operator, value)]}
    facts = ordered(ANCHOR)
    for now in NOWS:
        flip = next_flip_at(rule, facts, now)
        current = truth(rule, facts, now)
        # The day count only moves at ANCHOR + k days: check each such moment up to the flip.
        first_day = (now - ANCHOR) // DAY + 1
        last_day = first_day + 15 if flip is None else (flip - ANCHOR) // DAY
        for day in range(first_day, last_day):
            assert truth(rule, facts, ANCHOR + day * DAY) == current, (now, day)
        if flip is not None:
            assert flip > now
            assert (flip - ANCHOR) % DAY == timedelta(0)
            assert truth(rule, facts, flip - US) == current
            assert truth(rule, facts, flip) != current, now


def test_reads_time_only_for_days_since_variables() -> None:
    from services.segmenter.domain.rules.schedule import reads_time

    timeless = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1}]}
    nested = {
        "any": [
            timeless,
            {"all": [{"name": "days_since_last_order", "operator": "less_than", "value": 9}]},
        ]
    }
    assert not reads_time(timeless)
    assert reads_time(nested)
