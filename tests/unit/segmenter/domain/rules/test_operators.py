"""Our business-rules operator types, evaluated the way the engine calls them."""

from decimal import Decimal

import pytest
from business_rules.engine import _do_operator_comparison
from business_rules.operators import NumericType

from services.segmenter.domain.rules.operators import (
    CountMapType,
    NumberType,
    OptionalNumberType,
    SelectSetType,
    TextType,
)

D = Decimal


def check(operator_type: object, operator: str, value: object = None) -> bool:
    return bool(_do_operator_comparison(operator_type, operator, value))


@pytest.mark.parametrize(
    ("fact", "operator", "value", "expected"),
    [
        # EPSILON is 0.000001: a difference of exactly EPSILON still counts as equal.
        (D("200.000001"), "equal_to", 200, True),
        (D("200.0000011"), "equal_to", 200, False),
        (D("199.999999"), "equal_to", 200, True),
        (D("200.000001"), "not_equal_to", 200, False),
        (D("200.0000011"), "not_equal_to", 200, True),
        (D("200.000001"), "greater_than", 200, False),
        (D("200.0000011"), "greater_than", 200, True),
        (D("199.999999"), "greater_than_or_equal_to", 200, True),
        (D("199.9999989"), "greater_than_or_equal_to", 200, False),
        (D("199.999999"), "less_than", 200, False),
        (D("199.9999989"), "less_than", 200, True),
        (D("200.000001"), "less_than_or_equal_to", 200, True),
        (D("200.0000011"), "less_than_or_equal_to", 200, False),
        (3, "greater_than", D("2.5"), True),
        (2, "greater_than", D("2.5"), False),
        (50, "between", [50, 200], True),
        (200, "between", [50, 200], True),
        (D("49.999999"), "between", [50, 200], True),
        (D("49.9999989"), "between", [50, 200], False),
        (D("200.0000011"), "between", [50, 200], False),
        (7, "between", [7, 7], True),
    ],
)
def test_number_operators_use_epsilon(
    fact: object, operator: str, value: object, expected: bool
) -> None:
    assert check(NumberType(fact), operator, value) is expected


def test_number_keeps_numeric_type_operators_and_adds_ours() -> None:
    inherited = {op["name"] for op in NumericType.get_all_operators()}
    ours = {op["name"] for op in NumberType.get_all_operators()}
    assert ours == inherited | {"not_equal_to", "between"}


@pytest.mark.parametrize(
    ("operator", "value"),
    [
        ("equal_to", 0),
        ("not_equal_to", 0),
        ("greater_than", -1),
        ("greater_than_or_equal_to", 0),
        ("less_than", 1),
        ("less_than_or_equal_to", 0),
        ("between", [-1, 1]),
    ],
)
def test_optional_number_is_false_for_every_comparison_when_unknown(
    operator: str, value: object
) -> None:
    assert check(OptionalNumberType(None), operator, value) is False
    # Known, the same comparison holds for 0: unknown is not treated as 0.
    assert check(OptionalNumberType(0), operator, value) is (operator != "not_equal_to")


@pytest.mark.parametrize("fact", [None, 0, D("12.5")])
def test_optional_number_knows_whether_it_is_known(fact: object) -> None:
    assert check(OptionalNumberType(fact), "is_known") is (fact is not None)
    assert check(OptionalNumberType(fact), "is_unknown") is (fact is None)


@pytest.mark.parametrize(
    ("fact", "value"),
    [(D("200.000001"), 200), (D("200.0000011"), 200), (D("199.9999989"), 200), (5, D("5.5"))],
)
def test_optional_number_compares_like_number_when_known(fact: Decimal, value: object) -> None:
    for operator in (
        "equal_to",
        "not_equal_to",
        "greater_than",
        "greater_than_or_equal_to",
        "less_than",
        "less_than_or_equal_to",
    ):
        expected = check(NumberType(fact), operator, value)
        assert check(OptionalNumberType(fact), operator, value) is expected, operator


@pytest.mark.parametrize(
    ("fact", "operator", "value", "expected"),
    [
        (None, "equal_to", "", True),
        (None, "not_equal_to", "", False),
        (None, "is_empty", None, True),
        ("", "is_empty", None, True),
        ("x", "is_empty", None, False),
        ("Paris", "not_equal_to", "paris", True),
        ("Paris", "not_equal_to", "Paris", False),
        ("Paris", "does_not_contain", "ari", False),
        ("Paris", "does_not_contain", "ARI", True),
        (None, "does_not_contain", "", False),
        (None, "contains", "", True),
        ("Paris", "equal_to_case_insensitive", "pARIS", True),
        # Full Unicode case folding, not str.lower(): ß is ss, final sigma is σ.
        ("STRASSE", "equal_to_case_insensitive", "straße", True),
        ("ΣΊΣΥΦΟΣ", "equal_to_case_insensitive", "σίσυφος", True),
        ("İstanbul", "equal_to_case_insensitive", "istanbul", False),
        (None, "non_empty", None, False),
    ],
)
def test_text_reads_none_as_empty_and_negates(
    fact: str | None, operator: str, value: object, expected: bool
) -> None:
    assert check(TextType(fact), operator, value) is expected


@pytest.mark.parametrize(
    ("names", "operator", "value", "expected"),
    [
        (("VIP", "Wholesale"), "contains", "vip", True),
        (("VIP",), "does_not_contain", "Vip", False),
        ((), "does_not_contain", "vip", True),
        (("VIP", "Wholesale"), "contains_all", ["vip", "WHOLESALE"], True),
        (("VIP",), "contains_all", ["vip", "wholesale"], False),
        (("VIP",), "shares_at_least_one_element_with", ["x", "Vip"], True),
        (("VIP",), "shares_no_elements_with", ["x", "Vip"], False),
        ((), "shares_no_elements_with", ["x"], True),
        ((), "is_empty", None, True),
        (("a",), "is_empty", None, False),
        (("a",), "non_empty", None, True),
        ({"Apparel": 1}.keys(), "contains", "apparel", True),
        (("straße",), "contains", "STRASSE", True),
        (("ΣΊΣΥΦΟΣ",), "does_not_contain", "σίσυφος", False),
        (("straße", "ǅ"), "contains_all", ["STRASSE", "ǆ"], True),
        (("ﬃ",), "shares_at_least_one_element_with", ["FFI"], True),
        (("ﬃ",), "shares_no_elements_with", ["ffi"], False),
    ],
)
def test_select_set_matches_names_ignoring_case(
    names: tuple[str, ...], operator: str, value: object, expected: bool
) -> None:
    assert check(SelectSetType(names), operator, value) is expected


@pytest.mark.parametrize(
    ("counts", "operator", "key", "count", "expected"),
    [
        ({"Apparel": 2, "apparel": 1}, "count_at_least", "APPAREL", 3, True),
        ({"Apparel": 2, "apparel": 1}, "count_at_least", "Apparel", 4, False),
        ({"Apparel": 2}, "count_less_than", "apparel", 2, False),
        ({"Apparel": 2}, "count_less_than", "apparel", 3, True),
        ({"Apparel": 2}, "count_less_than", "Shoes", 1, True),
        ({}, "count_at_least", "Shoes", 0, True),
        ({}, "count_at_least", "Shoes", 1, False),
        ({"STRASSE": 2, "straße": 1, "Strasse": 1}, "count_at_least", "STRAßE", 4, True),
    ],
)
def test_count_map_sums_keys_equal_ignoring_case_missing_is_zero(
    counts: dict[str, int], operator: str, key: str, count: int, expected: bool
) -> None:
    value = {"key": key, "count": count}
    assert check(CountMapType(counts), operator, value) is expected


def test_count_map_rejects_what_is_not_a_mapping() -> None:
    with pytest.raises(AssertionError):
        CountMapType(["Apparel"])
