"""One Admin GraphQL request, end to end: parse and validate the document, price it, charge the
shop's bucket (or answer THROTTLED), execute it, refund the difference between the requested
and the actual cost, and log it. HTTP stays outside: this returns a status and a JSON body."""

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    execute,
    parse,
    print_ast,
    validate,
)
from graphql.execution.values import VariableValues, get_variable_values
from graphql.utilities import get_operation_ast

from services.shopify_standin import errors
from services.shopify_standin.context import RequestContext
from services.shopify_standin.cost import MAX_QUERY_COST, operation_costs
from services.shopify_standin.resolvers import executable_schema
from services.shopify_standin.state import Shop, iso, utc_now


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def cost_extension(shop: Shop, requested: int, actual: int | None, now: float) -> dict[str, Any]:
    """`extensions.cost` as Shopify sends it, with the bucket as it stands after the request."""
    bucket = shop.bucket
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": _number(bucket.maximum),
                "currentlyAvailable": int(bucket.level(now)),
                "restoreRate": _number(bucket.restore_rate),
            },
        }
    }


def _operation_label(operation: OperationDefinitionNode) -> str:
    """The top-level fields, e.g. "tagsAdd" or "nodes" (for logs)."""
    names = [s.name.value for s in operation.selection_set.selections if isinstance(s, FieldNode)]
    return ",".join(names) or "(fragments)"


def log_request(shop: Shop, entry: dict[str, Any]) -> None:
    """Append to the shop's request log, stamped with wall-clock and monotonic time."""
    shop.request_log.append({"at": iso(utc_now()), "t": time.monotonic(), **entry})


@lru_cache(maxsize=1024)
def prepared(query: str) -> tuple[DocumentNode | None, tuple[dict[str, Any], ...], str]:
    """(the parsed document, (), "") when `query` is valid against the schema, else (None,
    Shopify's errors, "syntax_error" or "invalid"). Clients send the same few documents over
    and over, and validating one costs more than running it, so the answer is kept."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return None, (errors.syntax_error(exc),), "syntax_error"
    problems = validate(executable_schema(), document)
    if problems:
        return None, tuple(errors.validation_error(e) for e in problems), "invalid"
    return document, (), ""


def handle_graphql(ctx: RequestContext, body: Any) -> Answer:
    """Answer one POST to /admin/api/{version}/graphql.json for the context's shop."""
    shop = ctx.shop
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return Answer(400, errors.MISSING_QUERY)
    variables = body.get("variables") or {}
    operation_name = body.get("operationName") or None
    if not isinstance(variables, dict) or not (
        operation_name is None or isinstance(operation_name, str)
    ):
        return Answer(400, {"errors": {"variables": "Required parameter missing or invalid"}})
    schema = executable_schema()
    document, refusal, outcome = prepared(body["query"])
    if document is None:
        log_request(shop, {"operation": None, "outcome": outcome})
        return Answer(200, {"errors": list(refusal)})
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        message = (
            f"No operation named '{operation_name}'"
            if operation_name
            else ("An operation name is required when the document holds several operations")
        )
        return Answer(200, {"errors": [{"message": message}]})
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables)
    if not isinstance(coerced, VariableValues):
        types = {
            d.variable.name.value: print_ast(d.type) for d in operation.variable_definitions or ()
        }
        return Answer(200, {"errors": [errors.variable_error(e, types) for e in coerced]})
    label = _operation_label(operation)
    requested = operation_costs(schema, document, operation, coerced)
    now = time.monotonic()
    before = shop.bucket.level(now)
    if requested > MAX_QUERY_COST:
        log_request(
            shop,
            {
                "operation": label,
                "outcome": "max_cost",
                "requested": requested,
                "actual": None,
                "before": before,
                "after": before,
            },
        )
        extension = cost_extension(shop, requested, None, now)
        return Answer(
            200,
            {
                "errors": [errors.max_cost_exceeded(requested, MAX_QUERY_COST)],
                "extensions": extension,
            },
        )
    if not shop.bucket.try_charge(requested, now):
        log_request(
            shop,
            {
                "operation": label,
                "outcome": "throttled",
                "requested": requested,
                "actual": None,
                "before": before,
                "after": before,
            },
        )
        extension = cost_extension(shop, requested, None, now)
        return Answer(200, {"errors": [errors.throttled()], "extensions": extension})
    result = execute(
        schema,
        document,
        context_value=ctx,
        variable_values=variables,
        operation_name=operation_name,
    )
    if not isinstance(result, ExecutionResult):
        raise TypeError("the stand-in's resolvers are synchronous")
    actual = operation_costs(schema, document, operation, coerced, result.data or {})
    actual = min(actual, requested)
    done = time.monotonic()
    shop.bucket.refund(requested - actual, done)
    response: dict[str, Any] = {"data": result.data}
    if result.errors:
        response["errors"] = [error.formatted for error in result.errors]
    response["extensions"] = cost_extension(shop, requested, actual, done)
    log_request(
        shop,
        {
            "operation": label,
            "outcome": "errors" if result.errors else "ok",
            "requested": requested,
            "actual": actual,
            "before": before,
            "after": shop.bucket.level(done),
        },
    )
    return Answer(200, response)
