"""The compiled Python evaluator against the business-rules engine on hand-written cases."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from business_rules.engine import check_conditions_recursively

from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules import variables
from services.segmenter.domain.rules.compile_py import compile_conditions
from services.segmenter.domain.rules.validate import validate_conditions
from services.segmenter.domain.rules.variables import SegmentVariables

NOW = datetime(2026, 3, 15, 12, 0, 0, 250_000, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
D = Decimal


def when(name: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"name": name, "operator": operator, "value": value}


def facts(**fields: Any) -> CustomerFacts:
    return CustomerFacts(shop_id=1, customer_id=1, **fields)


CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    # numbers with EPSILON
    ({"total_spent": D("1000.000001")}, when("total_spent", "greater_than", 1000), False),
    ({"total_spent": D("1000.0000011")}, when("total_spent", "greater_than", 1000), True),
    ({"total_spent": D("999.999999")}, when("lifetime_value", "equal_to", 1000), True),
    ({"orders_30d": 2}, when("orders_last_30_days", "between", [1, 2]), True),
    ({"orders_30d": 3}, when("orders_last_30_days", "between", [1, 2]), False),
    ({"orders_30d": 3}, when("orders_last_30_days", "not_equal_to", D("3.0000005")), False),
    ({"spent_90d": D("0.5")}, when("spent_last_90_days", "less_than_or_equal_to", D("0.5")), True),
    # unknown numbers
    ({}, when("average_order_value", "not_equal_to", 5), False),
    ({}, when("average_order_value", "less_than", 5), False),
    ({}, when("average_order_value", "is_unknown"), True),
    ({"average_order_value": D(0)}, when("average_order_value", "less_than", 5), True),
    ({"birthday_month": 12}, when("birthday_month", "equal_to", 12), True),
    ({"rfm_recency": 1}, when("rfm_recency", "between", [D("0.9999995"), 1]), True),
    # days since, at exact boundaries
    ({"registered_at": NOW - 30 * DAY}, when("days_since_registration", "less_than", 30), False),
    (
        {"registered_at": NOW - 30 * DAY + US},
        when("days_since_registration", "less_than", 30),
        True,
    ),
    ({"last_order_at": NOW - 91 * DAY}, when("days_since_last_order", "greater_than", 90), True),
    (
        {"last_order_at": NOW - 91 * DAY + US},
        when("days_since_last_order", "greater_than", 90),
        False,
    ),
    (
        {"last_order_at": NOW - 3 * DAY},
        when("days_since_last_order", "greater_than", D("2.5")),
        True,
    ),
    ({"last_order_at": NOW - 2 * DAY}, when("days_since_last_order", "equal_to", D("2.5")), False),
    (
        {"last_order_at": NOW - 2 * DAY},
        when("days_since_last_order", "not_equal_to", D("2.5")),
        True,
    ),
    ({"first_order_at": NOW + US}, when("days_since_first_order", "less_than", 0), True),
    ({}, when("days_since_last_engagement", "less_than", 1000), False),
    ({}, when("days_since_last_abandoned_checkout", "is_unknown"), True),
    (
        {"last_abandoned_checkout_at": NOW - 7 * DAY},
        when("days_since_last_abandoned_checkout", "between", [7, 7]),
        True,
    ),
    # text: None reads as ""
    ({}, when("city", "equal_to", ""), True),
    ({}, when("city", "non_empty"), False),
    ({}, when("city", "is_empty"), True),
    ({"city": "Paris"}, when("city", "equal_to_case_insensitive", "PARIS"), True),
    ({"city": "STRASSE"}, when("city", "equal_to_case_insensitive", "straße"), True),
    ({"city": "İstanbul"}, when("city", "equal_to_case_insensitive", "i̇stanbul"), True),
    ({"city": "Paris"}, when("city", "equal_to", "paris"), False),
    ({"city": "Paris"}, when("city", "not_equal_to", "paris"), True),
    ({"email": "a@example.com"}, when("email", "ends_with", "@example.com"), True),
    ({"email": "a@example.com"}, when("email", "starts_with", "b"), False),
    ({"email": "a@example.com"}, when("email", "does_not_contain", "example"), False),
    ({"country_code": "US"}, when("country_code", "matches_regex", "^U.$"), True),
    ({"province_code": "ON\n"}, when("province_code", "matches_regex", "N$"), True),
    ({"lifecycle_stage": "at_risk"}, when("lifecycle_stage", "equal_to", "at_risk"), True),
    ({}, when("rfm_segment", "contains", ""), True),
    # booleans
    ({"accepts_email_marketing": True}, when("accepts_email_marketing", "is_true"), True),
    ({}, when("accepts_sms_marketing", "is_false"), True),
    # sets, case-insensitive
    ({"tags": ("VIP", "wholesale")}, when("tags", "contains", "vip"), True),
    ({"tags": ("ΣΊΣΥΦΟΣ",)}, when("tags", "contains", "σίσυφος"), True),
    ({"tags": ("straße",)}, when("tags", "contains_all", ["STRASSE"]), True),
    ({"tags": ("VIP",)}, when("tags", "does_not_contain", "Vip"), False),
    ({}, when("tags", "does_not_contain", "vip"), True),
    ({"tags": ("VIP", "b")}, when("tags", "contains_all", ["B", "vip"]), True),
    ({"tags": ("VIP",)}, when("tags", "shares_at_least_one_element_with", ["x", "vIp"]), True),
    ({"tags": ("VIP",)}, when("tags", "shares_no_elements_with", ["x", "y"]), True),
    ({}, when("tags", "is_empty"), True),
    ({"vendor_counts": {"Acme": 0}}, when("vendors_bought", "contains", "acme"), True),
    ({"product_counts": {"123": 2}}, when("products_bought", "non_empty"), True),
    ({"product_type_counts": {"Hats": 1}}, when("product_types_bought", "contains", "hat"), False),
    # count maps: case-insensitive sum, missing key is 0
    (
        {"product_type_counts": {"STRASSE": 2, "straße": 1}},
        when("product_type_order_counts", "count_at_least", {"key": "Straße", "count": 3}),
        True,
    ),
    (
        {"product_type_counts": {"Apparel": 2, "apparel": 1}},
        when("product_type_order_counts", "count_at_least", {"key": "APPAREL", "count": 3}),
        True,
    ),
    (
        {"vendor_counts": {"Acme": 2}},
        when("vendor_order_counts", "count_less_than", {"key": "Other", "count": 1}),
        True,
    ),
    (
        {"product_counts": {"123": 1}},
        when("product_order_counts", "count_less_than", {"key": "123", "count": 1}),
        False,
    ),
]


@pytest.mark.parametrize(("fields", "condition", "expected"), CASES)
def test_compiled_condition_equals_engine(
    fields: dict[str, Any], condition: dict[str, Any], expected: bool
) -> None:
    customer = facts(**fields)
    for rule in (condition, {"all": [condition]}, {"any": [condition]}):
        validate_conditions(rule)
        engine = bool(check_conditions_recursively(rule, SegmentVariables(customer, NOW)))
        assert engine is expected
        assert compile_conditions(rule)(customer, NOW) is expected


NESTED = {
    "all": [
        when("orders_count", "greater_than_or_equal_to", 1),
        {
            "any": [
                when("tags", "contains", "vip"),
                {"all": [when("total_spent", "greater_than", 500), when("city", "non_empty")]},
                when("days_since_last_order", "less_than", 7),
            ]
        },
        when("product_type_order_counts", "count_less_than", {"key": "Hats", "count": 1}),
    ]
}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"orders_count": 1, "tags": ("VIP",)}, True),
        ({"orders_count": 0, "tags": ("VIP",)}, False),
        ({"orders_count": 1, "total_spent": D(600), "city": "Lyon"}, True),
        ({"orders_count": 1, "total_spent": D(600)}, False),
        ({"orders_count": 1, "last_order_at": NOW - 6 * DAY}, True),
        ({"orders_count": 1, "tags": ("vip",), "product_type_counts": {"hats": 1}}, False),
    ],
)
def test_nested_groups_equal_engine(fields: dict[str, Any], expected: bool) -> None:
    customer = facts(**fields)
    engine = bool(check_conditions_recursively(NESTED, SegmentVariables(customer, NOW)))
    assert engine is expected
    assert compile_conditions(NESTED)(customer, NOW) is expected


def test_compiled_rule_needs_no_engine_objects_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluate = compile_conditions(NESTED)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("SegmentVariables built during a compiled call")

    monkeypatch.setattr(variables.SegmentVariables, "__init__", forbidden)
    assert evaluate(facts(orders_count=1, tags=("VIP",)), NOW) is True


def test_compiled_rule_reads_now_at_call_time() -> None:
    evaluate = compile_conditions(when("days_since_registration", "less_than", 30))
    customer = facts(registered_at=NOW)
    assert evaluate(customer, NOW + 30 * DAY - US) is True
    assert evaluate(customer, NOW + 30 * DAY) is False
