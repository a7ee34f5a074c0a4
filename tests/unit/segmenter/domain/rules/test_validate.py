"""Rule validation: what is rejected, and the JSON path each error names."""

from decimal import Decimal
from typing import Any

import pytest

from services.segmenter.domain.rules.regex import MAX_LENGTH as MAX_REGEX
from services.segmenter.domain.rules.regex import MAX_PROGRAM_SIZE, compile_search
from services.segmenter.domain.rules.validate import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_TEXT,
    RuleError,
    RuleLimitError,
    validate_actions,
    validate_conditions,
)

OK = {"name": "orders_count", "operator": "greater_than", "value": 1}


def when(name: Any, operator: Any, value: Any = None) -> dict[str, Any]:
    return {"name": name, "operator": operator, "value": value}


def error_of(conditions: object) -> RuleError:
    with pytest.raises(RuleError) as caught:
        validate_conditions(conditions)
    return caught.value


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"all": [OK]}
    for _ in range(depth - 1):
        node = {"any": [OK, node]}
    return node


@pytest.mark.parametrize(
    "conditions",
    [
        {"all": [OK]},
        OK,
        {"any": [when("tags", "contains", "VIP"), {"all": [OK, OK]}]},
        {"all": [when("average_order_value", "between", [Decimal("49.99"), 200])]},
        {"all": [when("days_since_last_order", "is_unknown")]},
        {"all": [when("city", "equal_to", "")]},
        {"all": [when("email", "matches_regex", r"^[a-z0-9._-]+@example\.com$")]},
        {"all": [when("tags", "shares_no_elements_with", ["a", "b"])]},
        {"all": [when("vendor_order_counts", "count_less_than", {"key": "Acme", "count": 0})]},
        {"all": [when("total_spent", "equal_to", Decimal("0.000000000001"))]},
        {"all": [when("total_spent", "less_than", Decimal("999999999999999"))]},
        nested(MAX_DEPTH),
        {"all": [OK] * MAX_CONDITIONS},
    ],
)
def test_valid_rules_pass(conditions: object) -> None:
    validate_conditions(conditions)


@pytest.mark.parametrize(
    ("conditions", "path", "message"),
    [
        ([OK], "conditions", "expected an object"),
        ({"all": []}, "conditions.all", "non-empty"),
        ({"any": OK}, "conditions.any", "non-empty list"),
        ({"all": [OK], "any": [OK]}, "conditions", "exactly one key"),
        ({"all": [OK], "note": "x"}, "conditions", "exactly one key"),
        ({"all": [OK, "x"]}, "conditions.all[1]", "expected an object"),
        ({"all": [OK, when("nope", "equal_to", 1)]}, "conditions.all[1].name", "unknown variable"),
        ({"all": [when(["orders_count"], "equal_to", 1)]}, "conditions.all[0].name", "unknown"),
        ({"all": [when("orders_count", ["equal_to"], 1)]}, "conditions.all[0].operator", ""),
        (
            {"all": [OK, {"any": [when("tags", "greater_than", 1)]}]},
            "conditions.all[1].any[0].operator",
            "not an operator of select_set",
        ),
        # Attributes of a type that are not operators: the engine would getattr them.
        ({"all": [when("orders_count", "EPSILON", 1)]}, "conditions.all[0].operator", ""),
        ({"all": [when("orders_count", "value", 1)]}, "conditions.all[0].operator", ""),
        (
            {"all": [when("vendor_order_counts", "count", "Acme")]},
            "conditions.all[0].operator",
            "",
        ),
        ({"all": [when("orders_count", "get_all_operators")]}, "conditions.all[0].operator", ""),
        (
            {"all": [{"name": "orders_count", "operator": "is_true"}]},
            "conditions.all[0]",
            "missing key 'value'",
        ),
        ({"all": [{**OK, "extra": 1}]}, "conditions.all[0].extra", "unexpected key"),
        ({"all": [when("orders_count", "greater_than", 1.5)]}, "conditions.all[0].value", "float"),
        ({"all": [when("orders_count", "greater_than", "5")]}, "conditions.all[0].value", "number"),
        (
            {"all": [when("orders_count", "greater_than", True)]},
            "conditions.all[0].value",
            "number",
        ),
        (
            {"all": [when("orders_count", "greater_than", Decimal("NaN"))]},
            "conditions.all[0].value",
            "finite",
        ),
        (
            {"all": [when("orders_count", "greater_than", Decimal("-Infinity"))]},
            "conditions.all[0].value",
            "finite",
        ),
        (
            {"all": [when("total_spent", "greater_than", Decimal("1E+15"))]},
            "conditions.all[0].value",
            "below",
        ),
        (
            {"all": [when("total_spent", "greater_than", Decimal("0.0000000000001"))]},
            "conditions.all[0].value",
            "decimal places",
        ),
        ({"all": [when("total_spent", "between", [5, 1])]}, "conditions.all[0].value", "low"),
        ({"all": [when("total_spent", "between", [1])]}, "conditions.all[0].value", "[low, high]"),
        ({"all": [when("total_spent", "between", 1)]}, "conditions.all[0].value", "[low, high]"),
        (
            {"all": [when("total_spent", "between", [1, "9"])]},
            "conditions.all[0].value[1]",
            "number",
        ),
        ({"all": [when("orders_count", "is_known")]}, "conditions.all[0].operator", ""),
        ({"all": [when("average_order_value", "is_known", "")]}, "conditions.all[0].value", "null"),
        ({"all": [when("city", "equal_to", None)]}, "conditions.all[0].value", "string"),
        ({"all": [when("city", "equal_to", "a\x00b")]}, "conditions.all[0].value", "NUL"),
        ({"all": [when("city", "matches_regex", "(")]}, "conditions.all[0].value", "regular"),
        ({"all": [when("city", "matches_regex", r"\d+")]}, "conditions.all[0].value", "regular"),
        ({"all": [when("city", "matches_regex", "a{,3}")]}, "conditions.all[0].value", "regular"),
        ({"all": [when("tags", "contains", "")]}, "conditions.all[0].value", "non-empty"),
        ({"all": [when("tags", "contains", 5)]}, "conditions.all[0].value", "string"),
        ({"all": [when("tags", "contains_all", [])]}, "conditions.all[0].value", "non-empty"),
        ({"all": [when("tags", "contains_all", ["a", 3])]}, "conditions.all[0].value[1]", "string"),
        (
            {"all": [when("accepts_email_marketing", "is_true", True)]},
            "conditions.all[0].value",
            "",
        ),
        (
            {"all": [when("product_order_counts", "count_at_least", {"key": "1"})]},
            "conditions.all[0].value",
            "missing key 'count'",
        ),
        (
            {"all": [when("product_order_counts", "count_at_least", {"key": "1", "count": -1})]},
            "conditions.all[0].value.count",
            "whole number",
        ),
        (
            {"all": [when("product_order_counts", "count_at_least", {"key": "", "count": 1})]},
            "conditions.all[0].value.key",
            "non-empty",
        ),
        (
            {"all": [when("product_order_counts", "count_at_least", ["1", 1])]},
            "conditions.all[0].value",
            "expected",
        ),
    ],
)
def test_invalid_rules_name_the_path(conditions: object, path: str, message: str) -> None:
    error = error_of(conditions)
    assert error.path == path
    assert message in error.message
    assert str(error).startswith(path + ": ")


def test_groups_nest_at_most_max_depth() -> None:
    error = error_of(nested(MAX_DEPTH + 1))
    assert error.path == "conditions" + ".any[1]" * MAX_DEPTH + ".all"


def test_at_most_max_conditions_in_a_rule() -> None:
    error = error_of({"all": [OK] * 100 + [{"any": [OK] * (MAX_CONDITIONS - 99)}]})
    assert error.path == f"conditions.all[100].any[{MAX_CONDITIONS - 100}]"
    assert "more than" in error.message


# Counted repeats of a class: each `[a-z]{1,255}` is about 510 RE2 instructions.
WIDE = "[a-z]{1,255}"


@pytest.mark.parametrize(
    ("conditions", "limit"),
    [
        ({"all": [OK] * (MAX_CONDITIONS + 1)}, "conditions"),
        (nested(MAX_DEPTH + 1), "depth"),
        ({"all": [when("city", "equal_to", "x" * (MAX_TEXT + 1))]}, "text"),
        ({"all": [when("tags", "contains", "x" * (MAX_TEXT + 1))]}, "text"),
        ({"all": [when("email", "matches_regex", "a" * (MAX_REGEX + 1))]}, "regex_length"),
        ({"all": [when("email", "matches_regex", WIDE * 5)]}, "regex_program"),
    ],
)
def test_each_limit_is_a_rule_limit_error_naming_it(conditions: object, limit: str) -> None:
    error = error_of(conditions)
    assert isinstance(error, RuleLimitError)
    assert error.limit == limit


@pytest.mark.parametrize(
    "conditions",
    [
        {"all": [OK] * MAX_CONDITIONS},
        {"all": [when("city", "equal_to", "x" * MAX_TEXT)]},
        {"all": [when("email", "matches_regex", "a" * MAX_REGEX)]},
        {"all": [when("email", "matches_regex", WIDE * 3)]},
    ],
)
def test_rules_at_each_limit_pass(conditions: object) -> None:
    validate_conditions(conditions)


def test_the_program_size_limit_is_what_re2_compiles() -> None:
    with pytest.raises(ValueError, match=f"more than {MAX_PROGRAM_SIZE}"):
        compile_search(WIDE * 5)
    compile_search(WIDE * 3)


def test_an_invalid_rule_is_not_a_limit_error() -> None:
    assert not isinstance(error_of({"all": [when("nope", "equal_to", 1)]}), RuleLimitError)


def test_valid_actions_pass() -> None:
    validate_actions(
        [
            {"name": "add_tag", "params": {"tag": "VIP"}},
            {"name": "remove_tag", "params": {"tag": "churn risk"}},
            {"name": "enroll_journey", "params": {"journey": "win-back"}},
        ]
    )
    validate_actions([])


@pytest.mark.parametrize(
    ("actions", "path"),
    [
        ({"name": "add_tag"}, "actions"),
        (["add_tag"], "actions[0]"),
        ([{"name": "add_tag", "params": {"tag": "a"}}, {"name": "tag"}], "actions[1].name"),
        ([{"name": "add_tag"}], "actions[0]"),
        ([{"name": ["add_tag"], "params": {}}], "actions[0].name"),
        ([{"name": "add_tag", "params": None}], "actions[0].params"),
        ([{"name": "add_tag", "params": {}}], "actions[0].params"),
        ([{"name": "add_tag", "params": {"tag": "a", "x": 1}}], "actions[0].params.x"),
        ([{"name": "add_tag", "params": {"tag": "a,b"}}], "actions[0].params.tag"),
        ([{"name": "add_tag", "params": {"tag": " a"}}], "actions[0].params.tag"),
        ([{"name": "add_tag", "params": {"tag": ""}}], "actions[0].params.tag"),
        ([{"name": "remove_tag", "params": {"tag": 1}}], "actions[0].params.tag"),
        (
            [{"name": "enroll_journey", "params": {"journey": "Win Back"}}],
            "actions[0].params.journey",
        ),
        ([{"name": "enroll_journey", "params": {"tag": "x"}}], "actions[0].params.tag"),
        ([{"name": "add_tag", "params": {"tag": "a"}, "when": 1}], "actions[0].when"),
    ],
)
def test_invalid_actions_name_the_path(actions: object, path: str) -> None:
    with pytest.raises(RuleError) as caught:
        validate_actions(actions)
    assert caught.value.path == path
