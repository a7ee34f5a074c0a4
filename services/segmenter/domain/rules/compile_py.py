"""Compiles a validated rule once into a tree of closures over CustomerFacts.

The result equals business-rules' check_conditions_recursively over SegmentVariables (as a
bool) without the engine's per-call dict lookups, type casts and variable objects. Thresholds
are folded with EPSILON up front: x - c > EPSILON is x > c + EPSILON, exact for validated
numbers (validate.py bounds them so Decimal arithmetic never rounds).
"""

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from operator import attrgetter
from typing import Any

from business_rules.operators import BooleanType

from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules.days import day_range
from services.segmenter.domain.rules.folding import fold
from services.segmenter.domain.rules.operators import (
    EPSILON,
    CountMapType,
    NumberType,
    OptionalNumberType,
    SelectSetType,
    TextType,
    to_decimal,
)
from services.segmenter.domain.rules.regex import compile_search
from services.segmenter.domain.rules.variables import DAY, VARIABLES, Source

Predicate = Callable[[CustomerFacts, datetime], bool]
Getter = Callable[[CustomerFacts], Any]
Test = Callable[[Any], bool]

# Day counts beyond these are unreachable (timedelta spans +-999999999 days).
_NO_LOW = -(10**18)
_NO_HIGH = 10**18


def compile_conditions(conditions: Mapping[str, Any]) -> Predicate:
    """A function (facts, now) -> bool equal to the engine's result for this validated rule."""
    if "all" in conditions:
        return _all([compile_conditions(child) for child in conditions["all"]])
    if "any" in conditions:
        return _any([compile_conditions(child) for child in conditions["any"]])
    return _condition(conditions["name"], conditions["operator"], conditions["value"])


def _all(children: list[Predicate]) -> Predicate:
    if len(children) == 1:
        return children[0]
    if len(children) == 2:
        first, second = children
        return lambda facts, now: first(facts, now) and second(facts, now)

    def every(facts: CustomerFacts, now: datetime) -> bool:
        for child in children:
            if not child(facts, now):
                return False
        return True

    return every


def _any(children: list[Predicate]) -> Predicate:
    if len(children) == 1:
        return children[0]
    if len(children) == 2:
        first, second = children
        return lambda facts, now: first(facts, now) or second(facts, now)

    def some(facts: CustomerFacts, now: datetime) -> bool:
        for child in children:
            if child(facts, now):
                return True
        return False

    return some


def _condition(name: str, operator: str, value: Any) -> Predicate:
    variable = VARIABLES[name]
    get: Getter = attrgetter(variable.column)
    field_type = variable.field_type
    if field_type is OptionalNumberType and variable.source is Source.DAYS_SINCE:
        return _days(get, operator, value)
    if field_type is NumberType:
        test = _number_test(operator, value)
        return lambda facts, now: test(get(facts))
    if field_type is OptionalNumberType:
        if operator in ("is_known", "is_unknown"):
            known = operator == "is_known"
            return lambda facts, now: (get(facts) is not None) == known
        test = _number_test(operator, value)
        return lambda facts, now: (number := get(facts)) is not None and test(number)
    if field_type is TextType:
        test = _text_test(operator, value)
        return lambda facts, now: test(get(facts) or "")
    if field_type is BooleanType:
        wanted = operator == "is_true"
        return lambda facts, now: get(facts) is wanted
    if field_type is SelectSetType:
        test = _set_test(operator, value)
        return lambda facts, now: test(get(facts))
    if field_type is CountMapType:
        return _count_map(get, operator, value)
    raise ValueError(f"no compiler for {name} ({field_type.name})")


def _number_test(operator: str, value: Any) -> Test:
    if operator == "between":
        low = to_decimal(value[0]) - EPSILON
        high = to_decimal(value[1]) + EPSILON
        return lambda number: low <= number <= high
    threshold = to_decimal(value)
    below, above = threshold - EPSILON, threshold + EPSILON
    tests: dict[str, Test] = {
        "equal_to": lambda number: below <= number <= above,
        "not_equal_to": lambda number: not below <= number <= above,
        "greater_than": lambda number: number > above,
        "greater_than_or_equal_to": lambda number: number >= below,
        "less_than": lambda number: number < below,
        "less_than_or_equal_to": lambda number: number <= above,
    }
    return tests[operator]


def _days(get: Getter, operator: str, value: Any) -> Predicate:
    days = day_range(operator, value)
    if days is None:
        known = operator == "is_known"
        return lambda facts, now: (get(facts) is not None) == known
    low = _NO_LOW if days.start is None else days.start
    high = _NO_HIGH if days.stop is None else days.stop
    inside = days.inside

    def test(facts: CustomerFacts, now: datetime) -> bool:
        at = get(facts)
        return at is not None and (low <= (now - at) // DAY < high) == inside

    return test


def _text_test(operator: str, value: Any) -> Test:
    if operator == "non_empty":
        return bool
    if operator == "is_empty":
        return lambda text: not text
    if operator == "matches_regex":
        return compile_search(value)
    if operator == "equal_to_case_insensitive":
        folded = fold(value)
        return lambda text: fold(text) == folded
    tests: dict[str, Test] = {
        "equal_to": lambda text: text == value,
        "not_equal_to": lambda text: text != value,
        "starts_with": lambda text: text.startswith(value),
        "ends_with": lambda text: text.endswith(value),
        "contains": lambda text: value in text,
        "does_not_contain": lambda text: value not in text,
    }
    return tests[operator]


def _set_test(operator: str, value: Any) -> Test:
    if operator == "is_empty":
        return lambda names: not names
    if operator == "non_empty":
        return lambda names: bool(names)
    if operator in ("contains", "does_not_contain"):
        wanted = fold(value)
        present = operator == "contains"

        def contains(names: Iterable[str]) -> bool:
            for name in names:
                if fold(name) == wanted:
                    return present
            return not present

        return contains
    wanted_set = frozenset(fold(item) for item in value)

    def folded(names: Iterable[str]) -> set[str]:
        return {fold(name) for name in names}

    tests: dict[str, Test] = {
        "contains_all": lambda names: wanted_set <= folded(names),
        "shares_at_least_one_element_with": lambda names: not wanted_set.isdisjoint(folded(names)),
        "shares_no_elements_with": lambda names: wanted_set.isdisjoint(folded(names)),
    }
    return tests[operator]


def _count_map(get: Getter, operator: str, value: Any) -> Predicate:
    key = fold(value["key"])
    count = value["count"]

    def total(counts: Mapping[str, int]) -> int:
        return sum(n for name, n in counts.items() if fold(name) == key)

    if operator == "count_at_least":
        return lambda facts, now: total(get(facts)) >= count
    if operator == "count_less_than":
        return lambda facts, now: total(get(facts)) < count
    raise ValueError(f"unknown count map operator {operator!r}")
