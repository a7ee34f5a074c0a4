"""GraphQL errors in the words and shapes Shopify (graphql-ruby) uses for the common cases, so
a client's error handling meets what it will meet in production; other errors keep
graphql-core's message with a code naming their kind."""

import re
from typing import Any

from graphql import GraphQLError

_UNKNOWN_FIELD = re.compile(r"Cannot query field '(\w+)' on type '(\w+)'\.")
_MISSING_ARGUMENT = re.compile(r"Argument '\w+\.(\w+)\((\w+):\)' of type '.+' is required")
_UNKNOWN_ARGUMENT = re.compile(r"Unknown argument '(\w+)' on field '\w+\.(\w+)'\.")
_BAD_VARIABLE = re.compile(r"Variable '\$(\w+)' has invalid value(?: at (\S+))?: (.*)")

DOCUMENTATION = "https://shopify.dev/api/usage/rate-limits"


def _locations(error: GraphQLError) -> list[dict[str, int]]:
    return [{"line": loc.line, "column": loc.column} for loc in error.locations or []]


def _shaped(message: str, error: GraphQLError, extensions: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    locations = _locations(error)
    if locations:
        body["locations"] = locations
    body["extensions"] = extensions
    return body


def syntax_error(error: GraphQLError) -> dict[str, Any]:
    """A document that does not parse."""
    where = error.locations[0] if error.locations else None
    at = f" at [{where.line}, {where.column}]" if where else ""
    reason = error.message.removeprefix("Syntax Error: ").rstrip(".")
    return _shaped(f"syntax error, {reason}{at}", error, {"code": "PARSE_ERROR"})


def validation_error(error: GraphQLError) -> dict[str, Any]:
    """A document that parses but does not fit the schema."""
    message = error.message
    if match := _UNKNOWN_FIELD.match(message):
        field, type_name = match.groups()
        extensions = {"code": "undefinedField", "typeName": type_name, "fieldName": field}
        return _shaped(f"Field '{field}' doesn't exist on type '{type_name}'", error, extensions)
    if match := _MISSING_ARGUMENT.match(message):
        field, argument = match.groups()
        extensions = {
            "code": "missingRequiredArguments",
            "className": "Field",
            "name": field,
            "arguments": argument,
        }
        text = f"Field '{field}' is missing required arguments: {argument}"
        return _shaped(text, error, extensions)
    if match := _UNKNOWN_ARGUMENT.match(message):
        argument, field = match.groups()
        extensions = {
            "code": "argumentNotAccepted",
            "name": field,
            "typeName": "Field",
            "argumentName": argument,
        }
        return _shaped(f"Field '{field}' doesn't accept argument '{argument}'", error, extensions)
    return _shaped(message, error, {"code": "VALIDATION_ERROR"})


def variable_error(error: GraphQLError, type_names: dict[str, str]) -> dict[str, Any]:
    """Variables that do not fit their declared types."""
    match = _BAD_VARIABLE.match(error.message)
    if match is None:
        return _shaped(error.message, error, {"code": "INVALID_VARIABLE"})
    name, at, explanation = match.groups()
    path = [int(p) if p.isdigit() else p for p in re.findall(r"\w+", at or "")]
    message = f"Variable ${name} of type {type_names.get(name, '?')} was provided invalid value"
    extensions = {
        "code": "INVALID_VARIABLE",
        "problems": [{"path": path, "explanation": explanation.rstrip(".")}],
    }
    return _shaped(message, error, extensions)


def throttled() -> dict[str, Any]:
    """The error of a request refused because the bucket holds less than its cost."""
    return {
        "message": "Throttled",
        "extensions": {"code": "THROTTLED", "documentation": DOCUMENTATION},
    }


def max_cost_exceeded(cost: int, maximum: int) -> dict[str, Any]:
    """The error of a query asking for more than one request may cost."""
    message = (
        f"Query cost is {cost}, which exceeds the single query max cost limit ({maximum}). "
        "To query larger amounts of data with fewer limits, use bulk operations."
    )
    return {
        "message": message,
        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost, "maxCost": maximum},
    }


UNAUTHORIZED = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}
MISSING_QUERY = {"errors": {"query": "Required parameter missing or invalid"}}
STATUS_BODIES = {
    429: {"errors": "Exceeded the rate limit for this resource. Retry after the delay."},
    500: {"errors": "Internal Server Error"},
    502: {"errors": "Bad Gateway"},
    503: {"errors": "Service Unavailable"},
    504: {"errors": "Gateway Timeout"},
}
