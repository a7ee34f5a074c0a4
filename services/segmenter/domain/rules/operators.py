"""Operator types business-rules lacks, declared with its own BaseType and type_operator.

The engine evaluates stored rules with these classes, so they are the reference semantics
that the Python and SQL compilers reproduce. Numbers compare with NumericType's EPSILON.
Case-insensitive operators compare with fold() (full Unicode case folding), not the str.lower()
business-rules' own StringType and SelectType use, which PostgreSQL cannot reproduce.
"""

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, TypeVar, cast

from business_rules.fields import (
    FIELD_NO_INPUT,
    FIELD_NUMERIC,
    FIELD_SELECT,
    FIELD_SELECT_MULTIPLE,
    FIELD_TEXT,
)
from business_rules.operators import (
    BaseType,
    NumericType,
    SelectType,
    StringType,
    type_operator,
)

from services.segmenter.domain.rules.folding import fold
from services.segmenter.domain.rules.regex import compile_search

EPSILON: Decimal = NumericType.EPSILON

# Input kinds of our own, beside business-rules' FIELD_* ones, for editors and validation.
FIELD_NUMERIC_RANGE = "numeric_range"  # [low, high]
FIELD_KEY_COUNT = "key_count"  # {"key": str, "count": int}

F = TypeVar("F", bound=Callable[..., Any])


def operator(
    input_type: str, *, cast_argument: bool = True, label: str | None = None
) -> Callable[[F], F]:
    """business-rules' type_operator, typed; cast_argument=False for structured values."""
    decorator = type_operator(input_type, label=label, assert_type_for_arguments=cast_argument)
    return cast(Callable[[F], F], decorator)


def to_decimal(value: object) -> Decimal:
    """A rule number as NumericType casts it (int, Decimal, float exactly)."""
    return cast(Decimal, NumericType._assert_valid_value_and_cast(value))


class NumberType(NumericType):  # type: ignore[misc]
    """NumericType plus not_equal_to and an inclusive between."""

    name = "number"

    @operator(FIELD_NUMERIC)
    def not_equal_to(self, other: Decimal) -> bool:
        return not self.equal_to(other)

    @operator(FIELD_NUMERIC_RANGE, cast_argument=False)
    def between(self, bounds: list[object]) -> bool:
        low, high = bounds
        return bool(self.greater_than_or_equal_to(low) and self.less_than_or_equal_to(high))


class OptionalNumberType(BaseType):  # type: ignore[misc]
    """A number that may be unknown: every comparison is False while it is None."""

    name = "optional_number"

    @staticmethod
    def _assert_valid_value_and_cast(value: object) -> Decimal | None:
        return None if value is None else to_decimal(value)

    def _known(self) -> NumberType | None:
        return None if self.value is None else NumberType(self.value)

    @operator(FIELD_NO_INPUT)
    def is_known(self) -> bool:
        return self.value is not None

    @operator(FIELD_NO_INPUT)
    def is_unknown(self) -> bool:
        return self.value is None

    @operator(FIELD_NUMERIC)
    def equal_to(self, other: Decimal) -> bool:
        known = self._known()
        return known is not None and bool(known.equal_to(other))

    @operator(FIELD_NUMERIC)
    def not_equal_to(self, other: Decimal) -> bool:
        known = self._known()
        return known is not None and bool(known.not_equal_to(other))

    @operator(FIELD_NUMERIC)
    def greater_than(self, other: Decimal) -> bool:
        known = self._known()
        return known is not None and bool(known.greater_than(other))

    @operator(FIELD_NUMERIC)
    def greater_than_or_equal_to(self, other: Decimal) -> bool:
        known = self._known()
        return known is not None and bool(known.greater_than_or_equal_to(other))

    @operator(FIELD_NUMERIC)
    def less_than(self, other: Decimal) -> bool:
        known = self._known()
        return known is not None and bool(known.less_than(other))

    @operator(FIELD_NUMERIC)
    def less_than_or_equal_to(self, other: Decimal) -> bool:
        known = self._known()
        return known is not None and bool(known.less_than_or_equal_to(other))

    @operator(FIELD_NUMERIC_RANGE, cast_argument=False)
    def between(self, bounds: list[object]) -> bool:
        known = self._known()
        return known is not None and bool(known.between(bounds))


class TextType(StringType):  # type: ignore[misc]
    """StringType (None reads as "") plus the negative operators and is_empty."""

    name = "text"

    @operator(FIELD_TEXT, label="Equal To (case insensitive)")
    def equal_to_case_insensitive(self, other: str) -> bool:
        return fold(self.value) == fold(other)

    @operator(FIELD_TEXT)
    def not_equal_to(self, other: str) -> bool:
        return bool(self.value != other)

    @operator(FIELD_TEXT)
    def does_not_contain(self, other: str) -> bool:
        return other not in self.value

    @operator(FIELD_NO_INPUT)
    def is_empty(self) -> bool:
        return not self.value

    @operator(FIELD_TEXT)
    def matches_regex(self, regex: str) -> bool:
        # Replaces StringType's re.search: the same matches in linear time (regex.py).
        return compile_search(regex)(self.value)


class SelectSetType(SelectType):  # type: ignore[misc]
    """A set of strings: SelectType's contains / does_not_contain and SelectMultipleType's set
    comparisons, names matched case-insensitively (fold), plus emptiness."""

    name = "select_set"

    def _has(self, wanted: str) -> bool:
        folded = fold(wanted)
        return any(fold(name) == folded for name in self.value)

    @operator(FIELD_SELECT, cast_argument=False)
    def contains(self, other: str) -> bool:
        return self._has(other)

    @operator(FIELD_SELECT, cast_argument=False)
    def does_not_contain(self, other: str) -> bool:
        return not self._has(other)

    @operator(FIELD_SELECT_MULTIPLE)
    def contains_all(self, values: Iterable[str]) -> bool:
        return all(self._has(value) for value in values)

    @operator(FIELD_SELECT_MULTIPLE)
    def shares_at_least_one_element_with(self, values: Iterable[str]) -> bool:
        return any(self._has(value) for value in values)

    @operator(FIELD_SELECT_MULTIPLE)
    def shares_no_elements_with(self, values: Iterable[str]) -> bool:
        return not self.shares_at_least_one_element_with(values)

    @operator(FIELD_NO_INPUT)
    def is_empty(self) -> bool:
        return not self.value

    @operator(FIELD_NO_INPUT)
    def non_empty(self) -> bool:
        return bool(self.value)


class CountMapType(BaseType):  # type: ignore[misc]
    """Counts by name (orders per product type, vendor, product). A key's count is the sum
    over every key equal to it ignoring case (fold); a missing key counts 0."""

    name = "count_map"

    def _assert_valid_value_and_cast(self, value: object) -> Mapping[str, int]:
        if not isinstance(value, Mapping):
            raise AssertionError(f"{value!r} is not a valid count map")
        return value

    def count(self, key: str) -> int:
        """The count of key, matched case-insensitively like SelectSetType."""
        wanted = fold(key)
        return sum(n for name, n in self.value.items() if fold(name) == wanted)

    @operator(FIELD_KEY_COUNT, cast_argument=False)
    def count_at_least(self, wanted: Mapping[str, Any]) -> bool:
        return bool(self.count(wanted["key"]) >= wanted["count"])

    @operator(FIELD_KEY_COUNT, cast_argument=False)
    def count_less_than(self, wanted: Mapping[str, Any]) -> bool:
        return bool(self.count(wanted["key"]) < wanted["count"])


# The operator types export_rule_data does not know (it scans business-rules' own module only).
OPERATOR_TYPES: tuple[type[Any], ...] = (
    NumberType,
    OptionalNumberType,
    TextType,
    SelectSetType,
    CountMapType,
)
