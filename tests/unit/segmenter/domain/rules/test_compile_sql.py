"""The SQL compiler's output shape: parameters, numbering, casts, identifiers (its agreement
with the engine on a real PostgreSQL is in the integration tests)."""

import re
from decimal import Decimal
from typing import Any

import pytest
from business_rules.fields import (
    FIELD_NO_INPUT,
    FIELD_NUMERIC,
    FIELD_SELECT,
    FIELD_SELECT_MULTIPLE,
    FIELD_TEXT,
)

from services.segmenter.domain.rules.compile_sql import compile_where
from services.segmenter.domain.rules.operators import FIELD_KEY_COUNT, FIELD_NUMERIC_RANGE
from services.segmenter.domain.rules.validate import validate_conditions
from services.segmenter.domain.rules.variables import VARIABLES

SAMPLE_VALUES: dict[str, Any] = {
    FIELD_NO_INPUT: None,
    FIELD_NUMERIC: Decimal("123.456789"),
    FIELD_NUMERIC_RANGE: [Decimal("11.5"), 987],
    FIELD_TEXT: "O'Brien'); DROP TABLE customers; --",
    FIELD_SELECT: "Zebra'Tag",
    FIELD_SELECT_MULTIPLE: ["Alpha'X", 'Beta"Y'],
    FIELD_KEY_COUNT: {"key": "Kiwi'Fruit", "count": 424242},
}


def conditions_of(name: str) -> list[dict[str, Any]]:
    conditions = []
    for operator in VARIABLES[name].field_type.get_all_operators():
        value = SAMPLE_VALUES[operator["input_type"]]
        if operator["name"] == "matches_regex":
            value = "^Quux.z$"
        conditions.append({"name": name, "operator": operator["name"], "value": value})
    return conditions


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_every_condition_binds_its_values_and_casts_them(name: str) -> None:
    for condition in conditions_of(name):
        validate_conditions(condition)
        sql, params = compile_where(condition, now_param=1, first_param=4)
        # Numbering is contiguous from first_param, and every placeholder carries a cast.
        used = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)} - {1})
        assert used == list(range(4, 4 + len(params))), condition
        assert re.findall(r"\$\d+(?!\d)(?!::)", sql) == [], condition
        # No rule value reaches the SQL text.
        for marker in (
            "Brien",
            "Zebra",
            "Alpha",
            "Beta",
            "Kiwi",
            "424242",
            "123.45",
            "987",
            "Quux",
        ):
            assert marker not in sql, condition
        # now is always referenced, typed, so it can always be bound.
        assert "$1::timestamptz" in sql


def test_values_appear_in_params_in_placeholder_order() -> None:
    rule = {
        "all": [
            {"name": "total_spent", "operator": "between", "value": [10, 20]},
            {"any": [{"name": "city", "operator": "equal_to", "value": "Lyon"}]},
            {
                "name": "vendor_order_counts",
                "operator": "count_at_least",
                "value": {"key": "Acme", "count": 2},
            },
        ]
    }
    sql, params = compile_where(rule, now_param=1, first_param=2)
    assert params == [Decimal(10), Decimal(20), "Lyon", "Acme", Decimal(2)]
    assert sql.index("$2::") < sql.index("$3::") < sql.index("$4::") < sql.index("$5::")


def test_regex_values_are_bound_translated_for_postgres() -> None:
    condition = {"name": "city", "operator": "matches_regex", "value": "a.b$"}
    _, params = compile_where(condition, now_param=1, first_param=2)
    assert params == [r"a[^\n]b(?=\n?$)"]


def test_alias_qualifies_every_column() -> None:
    rule = {
        "all": [
            {"name": "tags", "operator": "contains", "value": "x"},
            {"name": "days_since_last_order", "operator": "greater_than", "value": 3},
            {"name": "top_product_type", "operator": "non_empty", "value": None},
        ]
    }
    sql, _ = compile_where(rule, now_param=1, first_param=2, alias="cu")
    assert "unnest(cu.tags)" in sql
    assert "cu.last_order_at IS NOT NULL" in sql
    assert "coalesce(cu.top_product_type, '')" in sql


@pytest.mark.parametrize("alias", ["", "C", "c;", "c d", "1c", 'c"'])
def test_alias_must_be_a_plain_identifier(alias: str) -> None:
    with pytest.raises(ValueError, match="alias"):
        compile_where({"name": "tags", "operator": "is_empty", "value": None}, 1, 2, alias=alias)


def test_now_param_may_not_collide_with_rule_values() -> None:
    rule = {"name": "orders_count", "operator": "between", "value": [1, 2]}
    with pytest.raises(ValueError, match=r"\$3"):
        compile_where(rule, now_param=3, first_param=2)
    sql, params = compile_where(rule, now_param=4, first_param=2)
    assert len(params) == 2
