"""bulkOperationRunMutation: the checks Shopify makes before accepting one, and the background
run that executes the mutation once per line of the staged JSONL (no cost charged), writes the
result file (one line per input line with its data or errors and `__lineNumber`, counted from
0) and announces the end with the bulk_operations/finish webhook."""

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute,
    parse,
    validate,
)

from services.shopify_standin.payloads import bulk_finish_body, bulk_view
from services.shopify_standin.state import BulkOperation, utc_now

if TYPE_CHECKING:
    from services.shopify_standin.context import RequestContext
    from services.shopify_standin.tag_lines import LineExecutor

logger = logging.getLogger(__name__)

# Lines executed between two yields to the event loop, so requests keep being served.
_LINES_PER_SLICE = 200
_NOT_IN_BULK = ("bulkOperationRunMutation", "bulkOperationRunQuery", "stagedUploadsCreate")
NO_SUCH_FILE = (
    "The JSONL file could not be found. Try uploading the file again, and check that you've "
    "entered the URL correctly for the stagedUploadPath mutation argument."
)
LINE_FAILURE = {
    "message": "Internal error. Looks like something went wrong on our end.",
    "extensions": {"code": "INTERNAL_SERVER_ERROR"},
}


def _refused(code: str, message: str, field: list[str] | None = None) -> dict[str, Any]:
    return {
        "bulkOperation": None,
        "userErrors": [{"field": field, "message": message, "code": code}],
    }


def check_bulk_mutation(schema: GraphQLSchema, text: str) -> tuple[DocumentNode | None, str]:
    """(the parsed document, "") when `text` is one mutation of one allowed field that is valid
    against the schema; (None, Shopify's reason) otherwise."""
    try:
        document = parse(text)
    except GraphQLError as exc:
        return None, f"Failed to parse the mutation - syntax error, {exc.message}"
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.MUTATION:
        return None, "Invalid mutation - the document must hold exactly one mutation"
    fields = [s for s in operations[0].selection_set.selections if isinstance(s, FieldNode)]
    if len(fields) != 1:
        return None, "Invalid mutation - a bulk mutation runs exactly one mutation field"
    if fields[0].name.value in _NOT_IN_BULK:
        return None, f"Invalid mutation - {fields[0].name.value} cannot run in bulk"
    errors = validate(schema, document)
    if errors:
        return None, f"Invalid mutation - {errors[0].message}"
    return document, ""


def run_bulk_mutation(
    ctx: "RequestContext", schema: GraphQLSchema, mutation: str, path: str
) -> dict[str, Any]:
    """The bulkOperationRunMutation payload; when accepted, the run starts in the background."""
    state = ctx.runtime.state
    shop = ctx.shop
    upload = state.uploads.get(path)
    if upload is None or upload.shop != shop.domain or upload.body is None:
        return _refused("NO_SUCH_FILE", NO_SUCH_FILE)
    if not upload.body.strip():
        return _refused("INVALID_STAGED_UPLOAD_FILE", "The input file is empty.")
    document, problem = check_bulk_mutation(schema, mutation)
    if document is None:
        return _refused("INVALID_MUTATION", problem, ["mutation"])
    running = shop.running_bulk_mutations()
    if len(running) >= shop.bulk_mutation_limit:
        ids = ", ".join(bulk_view(op)["id"] for op in running)
        message = f"A bulk mutation operation for this app and shop is already in progress: {ids}."
        return _refused("OPERATION_IN_PROGRESS", message)
    operation = BulkOperation(id=state.next_id(), query=mutation, created_at=utc_now())
    shop.bulk_operations[operation.id] = operation
    fault = shop.take_fault(("bulk",))
    failing = fault.lines if fault is not None else frozenset()
    hold = fault.delay_ms / 1000 if fault is not None else 0.0
    # Imported here: the fast path uses the resolvers, which import this module.
    from services.shopify_standin.tag_lines import compile_tag_lines

    lines = Lines(schema, document, compile_tag_lines(document))
    work = _run(ctx, lines, operation, upload.body, failing, hold)
    ctx.runtime.spawn(work, name=f"bulk-{operation.id}")
    return {"bulkOperation": bulk_view(operation), "userErrors": []}


@dataclass(frozen=True)
class Lines:
    """How a run executes its lines: the fast executor when the document has its shape."""

    schema: GraphQLSchema
    document: DocumentNode
    fast: "LineExecutor | None"

    def result(self, ctx: "RequestContext", line: bytes) -> dict[str, Any]:
        """The result-file row of one input line (without its line number)."""
        try:
            variables = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return {"errors": [{"message": f"Invalid JSON on this line: {exc}"}]}
        if not isinstance(variables, dict):
            return {"errors": [{"message": "Each line must be a JSON object of variables"}]}
        row = self.fast(ctx, variables) if self.fast is not None else None
        return row if row is not None else _executed(ctx, self.schema, self.document, variables)


def _executed(
    ctx: "RequestContext", schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]
) -> dict[str, Any]:
    result = execute(schema, document, context_value=ctx, variable_values=variables)
    if not isinstance(result, ExecutionResult):
        raise TypeError("bulk lines must execute synchronously")
    row: dict[str, Any] = {"data": result.data}
    if result.errors:
        row["errors"] = [error.formatted for error in result.errors]
    return row


async def _run(
    ctx: "RequestContext",
    lines: Lines,
    operation: BulkOperation,
    body: bytes,
    failing: frozenset[int],
    hold: float,
) -> None:
    if hold > 0:
        await asyncio.sleep(hold)
    operation.status = "RUNNING"
    rows: list[bytes] = []
    try:
        for number, line in enumerate(body.split(b"\n")):
            if not line.strip():
                continue
            if number in failing:
                row: dict[str, Any] = {"errors": [LINE_FAILURE]}
            else:
                row = lines.result(ctx, line)
            row["__lineNumber"] = number
            rows.append(orjson.dumps(row))
            operation.object_count += 1
            if operation.object_count % _LINES_PER_SLICE == 0:
                await asyncio.sleep(0)
        result = b"".join(row + b"\n" for row in rows)
        name = secrets.token_urlsafe(18)
        ctx.runtime.state.results[name] = result
        operation.url = f"{ctx.base_url}/bulk-operation-outputs/{name}.jsonl"
        operation.file_size = len(result)
        operation.status = "COMPLETED"
    except Exception:  # a failed run is reported as Shopify reports one, not lost
        logger.exception("bulk operation %s failed", operation.id)
        operation.status = "FAILED"
        operation.error_code = "INTERNAL_SERVER_ERROR"
    operation.completed_at = utc_now()
    ctx.runtime.dispatcher.emit(ctx.shop, "BULK_OPERATIONS_FINISH", bulk_finish_body(operation))
