"""Compiles a validated rule into a parameterised SQL condition over the customers table.

The condition is strictly true or false for every row (no NULL leaks) and equals the engine's
result for the row's CustomerFacts. Rule values are always bound parameters; identifiers come
only from VARIABLES. Case-insensitive comparisons compare sql_fold() of both sides: the same
full Unicode case folding as the engine's fold(), whatever the database's locale (folding.py).
"""

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from business_rules.operators import BooleanType

from services.segmenter.domain.rules.days import day_range
from services.segmenter.domain.rules.folding import sql_fold
from services.segmenter.domain.rules.operators import (
    EPSILON,
    CountMapType,
    NumberType,
    OptionalNumberType,
    SelectSetType,
    TextType,
    to_decimal,
)
from services.segmenter.domain.rules.regex import to_postgres
from services.segmenter.domain.rules.variables import VARIABLES, Source, Variable

_ALIAS = re.compile(r"[a-z][a-z0-9_]*")
_EPS = str(EPSILON)


def compile_where(
    conditions: Mapping[str, Any], now_param: int, first_param: int, alias: str | None = None
) -> tuple[str, list[object]]:
    """(sql, params): the rule as a boolean over customers (optionally `alias.`-qualified),
    `now` (non-NULL) always read from $now_param, rule values bound as $first_param, ..."""
    if alias is not None and not _ALIAS.fullmatch(alias):
        raise ValueError(f"not a plain table alias: {alias!r}")
    compiler = _Compiler(now_param, first_param, alias)
    sql = compiler.node(conditions)
    if compiler.now not in sql:
        # A parameter the statement never mentions has no type and fails to prepare; keep
        # $now typed so callers can always bind it.
        sql = f"({sql} AND {compiler.now} IS NOT NULL)"
    if first_param <= now_param < first_param + len(compiler.params):
        raise ValueError(f"${now_param} is also a rule value parameter")
    return sql, compiler.params


class _Compiler:
    def __init__(self, now_param: int, first_param: int, alias: str | None) -> None:
        self.now = f"${now_param}::timestamptz"
        self.first = first_param
        self.prefix = f"{alias}." if alias else ""
        self.params: list[object] = []

    def param(self, value: object, sql_type: str) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params) - 1}::{sql_type}"

    def node(self, node: Mapping[str, Any]) -> str:
        if "all" in node:
            return "(" + " AND ".join(self.node(child) for child in node["all"]) + ")"
        if "any" in node:
            return "(" + " OR ".join(self.node(child) for child in node["any"]) + ")"
        return self.condition(node["name"], node["operator"], node["value"])

    def condition(self, name: str, operator: str, value: Any) -> str:
        variable = VARIABLES[name]
        column = self.prefix + variable.column
        field_type = variable.field_type
        if field_type is OptionalNumberType and operator in ("is_known", "is_unknown"):
            return f"{column} IS {'NOT ' if operator == 'is_known' else ''}NULL"
        if field_type is OptionalNumberType and variable.source is Source.DAYS_SINCE:
            return self.days(column, operator, value)
        if field_type is NumberType:
            return self.number(column, operator, value)
        if field_type is OptionalNumberType:
            return f"({column} IS NOT NULL AND {self.number(column, operator, value)})"
        if field_type is TextType:
            return self.text(f"coalesce({column}, '')", operator, value)
        if field_type is BooleanType:
            return f"{column} IS {'TRUE' if operator == 'is_true' else 'NOT TRUE'}"
        if field_type is SelectSetType:
            return self.names(self.elements(variable, column), operator, value)
        if field_type is CountMapType:
            return self.count_map(column, operator, value)
        raise ValueError(f"no SQL for {name} ({field_type.name})")

    def number(self, column: str, operator: str, value: Any) -> str:
        # The same differences NumericType computes, so EPSILON means the same.
        if operator == "between":
            low = self.param(to_decimal(value[0]), "numeric")
            high = self.param(to_decimal(value[1]), "numeric")
            return f"({column} - {low} >= -{_EPS} AND {high} - {column} >= -{_EPS})"
        threshold = self.param(to_decimal(value), "numeric")
        forms = {
            "equal_to": f"abs({column} - {threshold}) <= {_EPS}",
            "not_equal_to": f"abs({column} - {threshold}) > {_EPS}",
            "greater_than": f"{column} - {threshold} > {_EPS}",
            "greater_than_or_equal_to": f"{column} - {threshold} >= -{_EPS}",
            "less_than": f"{threshold} - {column} > {_EPS}",
            "less_than_or_equal_to": f"{threshold} - {column} >= -{_EPS}",
        }
        return forms[operator]

    def days(self, column: str, operator: str, value: Any) -> str:
        # Whole days d = floor(age / 1 day); compare the exact age in seconds with the integer
        # bounds on d instead of dividing, so no numeric rounding can move a day boundary.
        days = day_range(operator, value)
        assert days is not None
        age = f"extract(epoch from ({self.now} - {column}))"
        bounds = []
        if days.start is not None:
            bounds.append(f"{age} >= {self.param(Decimal(days.start), 'numeric')} * 86400")
        if days.stop is not None:
            bounds.append(f"{age} < {self.param(Decimal(days.stop), 'numeric')} * 86400")
        within = " AND ".join(bounds)
        if not days.inside:
            within = f"NOT ({within})"
        return f"({column} IS NOT NULL AND {within})"

    def text(self, text: str, operator: str, value: Any) -> str:
        if operator == "non_empty":
            return f"{text} <> ''"
        if operator == "is_empty":
            return f"{text} = ''"
        if operator == "matches_regex":
            return f"{text} ~ {self.param(to_postgres(value), 'text')}"
        wanted = self.param(value, "text")
        forms = {
            "equal_to": f"{text} = {wanted}",
            "not_equal_to": f"{text} <> {wanted}",
            "equal_to_case_insensitive": f"{sql_fold(text)} = {sql_fold(wanted)}",
            "starts_with": f"starts_with({text}, {wanted})",
            "ends_with": f"right({text}, length({wanted})) = {wanted}",
            "contains": f"strpos({text}, {wanted}) > 0",
            "does_not_contain": f"strpos({text}, {wanted}) = 0",
        }
        return forms[operator]

    @staticmethod
    def elements(variable: Variable, column: str) -> str:
        if variable.source is Source.KEYS:
            return f"jsonb_object_keys({column})"
        return f"unnest({column})"

    def names(self, elements: str, operator: str, value: Any) -> str:
        if operator in ("is_empty", "non_empty"):
            found = f"EXISTS (SELECT 1 FROM {elements})"
            return found if operator == "non_empty" else f"NOT {found}"
        if operator in ("contains", "does_not_contain"):
            wanted = self.param(value, "text")
            found = (
                f"EXISTS (SELECT 1 FROM {elements} AS _el(v) "
                f"WHERE {sql_fold('_el.v')} = {sql_fold(wanted)})"
            )
            return found if operator == "contains" else f"NOT {found}"
        wanted_list = self.param(list(value), "text[]")
        if operator == "contains_all":
            return (
                f"NOT EXISTS (SELECT 1 FROM unnest({wanted_list}) AS _want(v) WHERE NOT EXISTS "
                f"(SELECT 1 FROM {elements} AS _el(v) "
                f"WHERE {sql_fold('_el.v')} = {sql_fold('_want.v')}))"
            )
        shared = (
            f"EXISTS (SELECT 1 FROM {elements} AS _el(v) JOIN unnest({wanted_list}) AS _want(v) "
            f"ON {sql_fold('_el.v')} = {sql_fold('_want.v')})"
        )
        if operator == "shares_at_least_one_element_with":
            return shared
        if operator == "shares_no_elements_with":
            return f"NOT {shared}"
        raise ValueError(f"unknown set operator {operator!r}")

    def count_map(self, column: str, operator: str, value: Any) -> str:
        key = self.param(value["key"], "text")
        count = self.param(Decimal(value["count"]), "numeric")
        total = (
            f"coalesce((SELECT sum((_kv.value)::numeric) FROM jsonb_each({column}) AS _kv "
            f"WHERE {sql_fold('_kv.key')} = {sql_fold(key)}), 0)"
        )
        if operator == "count_at_least":
            return f"{total} >= {count}"
        if operator == "count_less_than":
            return f"{total} < {count}"
        raise ValueError(f"unknown count map operator {operator!r}")
