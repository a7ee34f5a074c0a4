"""SegmentVariables, the VARIABLES catalog the compilers use, actions and rule_data."""

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from business_rules.engine import run

from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules.operators import OPERATOR_TYPES
from services.segmenter.domain.rules.variables import (
    VARIABLES,
    SegmentActions,
    SegmentVariables,
    Source,
    rule_data,
)

NOW = datetime(2026, 3, 15, 12, 0, 0, 500_000, tzinfo=UTC)
DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)


def facts(**fields: object) -> CustomerFacts:
    return CustomerFacts(shop_id=1, customer_id=1, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("registered_at", "days"),
    [
        (NOW, 0),
        (NOW - MICROSECOND, 0),
        (NOW - DAY + MICROSECOND, 0),
        (NOW - DAY, 1),
        (NOW - 30 * DAY, 30),
        (NOW - 30 * DAY + MICROSECOND, 29),
        (NOW - 30 * DAY - MICROSECOND, 30),
        (NOW + MICROSECOND, -1),
        (NOW + DAY, -1),
        (NOW + DAY + MICROSECOND, -2),
        (None, None),
    ],
)
def test_days_since_floors_whole_days(registered_at: datetime | None, days: int | None) -> None:
    variables = SegmentVariables(facts(registered_at=registered_at), NOW)
    assert variables.days_since_registration() == days


def _distinct_facts() -> CustomerFacts:
    """Every field a different value, so a variable reading the wrong column shows."""
    values: dict[str, object] = {}
    for number, field in enumerate(dataclasses.fields(CustomerFacts), start=1):
        kind = str(field.type)
        if "datetime" in kind:
            values[field.name] = NOW - number * DAY
        elif "Decimal" in kind:
            values[field.name] = Decimal(number) + Decimal("0.25")
        elif "Mapping" in kind:
            values[field.name] = {f"key{number}": number}
        elif "tuple" in kind:
            values[field.name] = (f"tag{number}",)
        elif "bool" in kind:
            values[field.name] = number % 2 == 0
        elif "int" in kind:
            values[field.name] = number
        else:
            values[field.name] = f"text{number}"
    return CustomerFacts(**values)  # type: ignore[arg-type]


def test_catalog_names_the_column_each_variable_reads() -> None:
    customer = _distinct_facts()
    variables = SegmentVariables(customer, NOW)
    for name, variable in VARIABLES.items():
        read = getattr(variables, name)()
        column = getattr(customer, variable.column)
        if variable.source is Source.DAYS_SINCE:
            expected = (NOW - column) // DAY
        elif variable.source is Source.KEYS:
            expected = tuple(column)
        else:
            expected = column
        assert read == expected, name


def test_catalog_and_declared_variables_agree_on_names_and_types() -> None:
    declared = {v["name"]: v["field_type"] for v in SegmentVariables.get_all_variables()}
    assert declared == {name: v.field_type.name for name, v in VARIABLES.items()}
    field_names = {f.name for f in dataclasses.fields(CustomerFacts)}
    assert {v.column for v in VARIABLES.values()} <= field_names


def test_rule_data_describes_our_variables_operator_types_and_actions() -> None:
    data = rule_data()
    json.dumps(data)  # an editor receives it as JSON
    types = data["variable_type_operators"]
    for operator_type in OPERATOR_TYPES:
        assert operator_type.name in types
    assert {op["name"] for op in types["number"]} >= {"between", "not_equal_to", "greater_than"}
    assert {op["name"] for op in types["optional_number"]} >= {"is_known", "is_unknown", "between"}
    assert {op["name"] for op in types["count_map"]} == {"count_at_least", "count_less_than"}
    assert {op["name"] for op in types["select_set"]} >= {"contains", "shares_no_elements_with"}
    # Every variable's type has its operators listed.
    variables = {v["name"]: v for v in data["variables"]}
    assert set(variables) == set(VARIABLES)
    assert all(v["field_type"] in types for v in variables.values())
    assert variables["lifecycle_stage"]["options"][0] == "potential"
    actions = {a["name"]: [p["name"] for p in a["params"]] for a in data["actions"]}
    assert actions == {"add_tag": ["tag"], "remove_tag": ["tag"], "enroll_journey": ["journey"]}


def test_the_engine_runs_a_rule_with_every_action() -> None:
    rule = {
        "conditions": {"all": [{"name": "total_spent", "operator": "greater_than", "value": 10}]},
        "actions": [
            {"name": "add_tag", "params": {"tag": "VIP"}},
            {"name": "remove_tag", "params": {"tag": "new"}},
            {"name": "enroll_journey", "params": {"journey": "vip-care"}},
        ],
    }
    assert run(rule, SegmentVariables(facts(total_spent=Decimal(11)), NOW), SegmentActions())
    assert not run(rule, SegmentVariables(facts(), NOW), SegmentActions())
