"""Checks a stored rule before it is saved or compiled; errors name a JSON path into it.

A rule that passes is one the business-rules engine, the Python compiler and the SQL compiler
all evaluate without error and with the same result.
"""

import re
from decimal import Decimal
from typing import Any

from business_rules.fields import (
    FIELD_NO_INPUT,
    FIELD_NUMERIC,
    FIELD_SELECT,
    FIELD_SELECT_MULTIPLE,
    FIELD_TEXT,
)

from services.segmenter.domain.rules.operators import FIELD_KEY_COUNT, FIELD_NUMERIC_RANGE
from services.segmenter.domain.rules.regex import (
    MAX_LENGTH as MAX_REGEX,
)
from services.segmenter.domain.rules.regex import (
    RegexError,
    RegexTooLargeError,
    compile_search,
    to_postgres,
)
from services.segmenter.domain.rules.variables import VARIABLES

MAX_DEPTH = 10  # nested all/any groups
MAX_CONDITIONS = 200
MAX_TEXT = 1000
# Bounds that keep NumericType's Decimal arithmetic (28 digits) exact, as SQL numeric is.
MAX_MAGNITUDE = Decimal(10) ** 15
DECIMAL_PLACES = 12
MAX_COUNT = 10**9

_CONDITION_KEYS = ("name", "operator", "value")
_ACTION_PARAMS = {"add_tag": "tag", "remove_tag": "tag", "enroll_journey": "journey"}
_JOURNEY = re.compile(r"[a-z0-9][a-z0-9-]*")
MAX_TAG = 255
MAX_JOURNEY = 100


class RuleError(ValueError):
    """A rule is invalid at path (for example `conditions.all[2].any[0].value`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class RuleLimitError(RuleError):
    """A rule exceeds one of the limits that bound its evaluation time; `limit` names it
    (conditions, depth, text, regex_length, regex_program)."""

    def __init__(self, path: str, message: str, limit: str) -> None:
        super().__init__(path, message)
        self.limit = limit


def validate_conditions(obj: object) -> None:
    """Raise RuleError unless obj is a valid conditions tree of our variables and operators."""
    _Walker().node(obj, "conditions", 1)


def validate_actions(obj: object) -> None:
    """Raise RuleError unless obj is a list of add_tag / remove_tag / enroll_journey actions."""
    if not isinstance(obj, list):
        raise RuleError("actions", "expected a list")
    for index, item in enumerate(obj):
        path = f"actions[{index}]"
        if not isinstance(item, dict):
            raise RuleError(path, "expected an object")
        name = item.get("name")
        if not isinstance(name, str) or name not in _ACTION_PARAMS:
            raise RuleError(f"{path}.name", f"unknown action {name!r}")
        _only_keys(item, ("name", "params"), path)
        params = item.get("params")
        if not isinstance(params, dict):
            raise RuleError(f"{path}.params", "expected an object")
        param = _ACTION_PARAMS[name]
        _only_keys(params, (param,), f"{path}.params")
        value = params.get(param)
        value_path = f"{path}.params.{param}"
        if param == "tag":
            tag = _text(value, value_path, MAX_TAG, allow_empty=False)
            if "," in tag or tag != tag.strip():
                raise RuleError(value_path, "a tag has no commas and no surrounding spaces")
        elif (
            not isinstance(value, str) or not _JOURNEY.fullmatch(value) or len(value) > MAX_JOURNEY
        ):
            raise RuleError(value_path, "a journey is a handle such as win-back ([a-z0-9-])")


def _only_keys(obj: dict[Any, Any], allowed: tuple[str, ...], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise RuleError(f"{path}.{key}", "unexpected key")
    for key in allowed:
        if key not in obj:
            raise RuleError(path, f"missing key {key!r}")


class _Walker:
    def __init__(self) -> None:
        self.conditions = 0

    def node(self, node: object, path: str, depth: int) -> None:
        if not isinstance(node, dict):
            raise RuleError(path, "expected an object")
        groups = [key for key in ("all", "any") if key in node]
        if not groups:
            self.conditions += 1
            if self.conditions > MAX_CONDITIONS:
                raise RuleLimitError(path, f"more than {MAX_CONDITIONS} conditions", "conditions")
            _condition(node, path)
            return
        if len(node) != 1:
            raise RuleError(path, "a group has exactly one key, all or any")
        key = groups[0]
        group_path = f"{path}.{key}"
        if depth > MAX_DEPTH:
            raise RuleLimitError(group_path, f"groups nest at most {MAX_DEPTH} deep", "depth")
        children = node[key]
        if not isinstance(children, list) or not children:
            raise RuleError(group_path, "expected a non-empty list")
        for index, child in enumerate(children):
            self.node(child, f"{group_path}[{index}]", depth + 1)


def _condition(node: dict[Any, Any], path: str) -> None:
    _only_keys(node, _CONDITION_KEYS, path)
    name, operator, value = node["name"], node["operator"], node["value"]
    variable = VARIABLES.get(name) if isinstance(name, str) else None
    if variable is None:
        raise RuleError(f"{path}.name", f"unknown variable {name!r}")
    method = getattr(variable.field_type, operator, None) if isinstance(operator, str) else None
    if not getattr(method, "is_operator", False):
        raise RuleError(
            f"{path}.operator",
            f"{operator!r} is not an operator of {variable.field_type.name} variables",
        )
    value_path = f"{path}.value"
    input_type = getattr(method, "input_type", None)
    if operator == "matches_regex":
        _regex(value, value_path)
    elif input_type == FIELD_NO_INPUT:
        if value is not None:
            raise RuleError(value_path, f"{operator} takes no value: use null")
    elif input_type == FIELD_NUMERIC:
        _number(value, value_path)
    elif input_type == FIELD_NUMERIC_RANGE:
        _range(value, value_path)
    elif input_type == FIELD_TEXT:
        _text(value, value_path, MAX_TEXT, allow_empty=True)
    elif input_type == FIELD_SELECT:
        _text(value, value_path, MAX_TEXT, allow_empty=False)
    elif input_type == FIELD_SELECT_MULTIPLE:
        if not isinstance(value, list) or not value:
            raise RuleError(value_path, "expected a non-empty list of strings")
        for index, item in enumerate(value):
            _text(item, f"{value_path}[{index}]", MAX_TEXT, allow_empty=False)
    elif input_type == FIELD_KEY_COUNT:
        _key_count(value, value_path)
    else:  # pragma: no cover - every operator type above declares a known input
        raise RuleError(value_path, f"unsupported input {input_type!r}")


def _number(value: object, path: str) -> Decimal:
    if isinstance(value, float):
        raise RuleError(path, "floats are not accepted: parse JSON with parse_float=Decimal")
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise RuleError(path, "expected a number")
    number = Decimal(value)
    if not number.is_finite():
        raise RuleError(path, "expected a finite number")
    if abs(number) >= MAX_MAGNITUDE:
        raise RuleError(path, f"numbers stay below {MAX_MAGNITUDE:,}")
    if number.quantize(Decimal(1).scaleb(-DECIMAL_PLACES)) != number:
        raise RuleError(path, f"at most {DECIMAL_PLACES} decimal places")
    return number


def _range(value: object, path: str) -> None:
    if not isinstance(value, list) or len(value) != 2:
        raise RuleError(path, "expected [low, high]")
    low = _number(value[0], f"{path}[0]")
    high = _number(value[1], f"{path}[1]")
    if low > high:
        raise RuleError(path, "low must not exceed high")


def _text(value: object, path: str, max_length: int, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise RuleError(path, "expected a string")
    if not value and not allow_empty:
        raise RuleError(path, "expected a non-empty string")
    if len(value) > max_length:
        raise RuleLimitError(path, f"longer than {max_length} characters", "text")
    if "\x00" in value:
        raise RuleError(path, "NUL characters are not allowed")
    return value


def _regex(value: object, path: str) -> None:
    pattern = _text(value, path, MAX_TEXT, allow_empty=False)
    if len(pattern) > MAX_REGEX:
        raise RuleLimitError(path, f"a pattern is at most {MAX_REGEX} characters", "regex_length")
    try:
        to_postgres(pattern)
        compile_search(pattern)
    except RegexTooLargeError as exc:
        raise RuleLimitError(path, str(exc), "regex_program") from None
    except RegexError as exc:
        raise RuleError(path, f"unsupported regular expression: {exc}") from None


def _key_count(value: object, path: str) -> None:
    if not isinstance(value, dict):
        raise RuleError(path, 'expected {"key": ..., "count": ...}')
    _only_keys(value, ("key", "count"), path)
    _text(value["key"], f"{path}.key", MAX_TEXT, allow_empty=False)
    count = value["count"]
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
        raise RuleError(f"{path}.count", f"expected a whole number from 0 to {MAX_COUNT}")
