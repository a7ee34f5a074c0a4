"""The bulk path for large tag changes: stagedUploadsCreate, a multipart upload of the JSONL
variables, bulkOperationRunMutation, polling the operation until it ends, and reading the
result file, in which every input line has a line of its own (`__lineNumber`, from 0).

Polling is bounded: an operation still running at the bound raises ShopifyBulkPending with its
id; `BulkRunner.outcome` reads it again later (it goes on running on Shopify)."""

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from services.common.backoff import Backoff
from services.tagger.shopify import queries
from services.tagger.shopify.errors import (
    ShopifyBulkError,
    ShopifyBulkPending,
    ShopifyUnavailable,
)
from services.tagger.shopify.models import BulkLineFailure, BulkResult, TagKind

if TYPE_CHECKING:
    from services.tagger.shopify.client import AdminClient

_RUNNING = ("CREATED", "RUNNING", "CANCELING")
_FIELDS = {"add": "tagsAdd", "remove": "tagsRemove"}


def build_jsonl(lines: Sequence[tuple[int, Sequence[str]]]) -> bytes:
    """The variables file: one `{"id": <customer GID>, "tags": [...]}` per line."""
    return b"".join(
        orjson.dumps({"id": f"gid://shopify/Customer/{customer_id}", "tags": list(tags)}) + b"\n"
        for customer_id, tags in lines
    )


def parse_result(
    body: bytes, lines: Sequence[tuple[int, Sequence[str]]], kind: TagKind
) -> tuple[int, tuple[BulkLineFailure, ...]]:
    """(lines applied, lines that failed) from a result file. A line with userErrors failed
    for good; one with errors, or with no result line at all, may succeed when sent again."""
    field = _FIELDS[kind]
    outcome: dict[int, tuple[tuple[str, ...], bool]] = {}
    for raw in body.splitlines():
        if not raw.strip():
            continue
        row = orjson.loads(raw)
        number = row.get("__lineNumber")
        if not isinstance(number, int):
            continue
        errors = row.get("errors") or []
        payload = (row.get("data") or {}).get(field) or {}
        refused = payload.get("userErrors") or []
        if errors:
            outcome[number] = (tuple(str(e.get("message")) for e in errors), True)
        elif refused:
            outcome[number] = (tuple(str(e.get("message")) for e in refused), False)
        elif not payload.get("node"):
            outcome[number] = (("no node in the result",), True)
        else:
            outcome[number] = ((), False)
    applied = 0
    failures = []
    for number, (customer_id, tags) in enumerate(lines):
        messages, retryable = outcome.get(number, (("no result line",), True))
        if messages:
            failures.append(BulkLineFailure(number, customer_id, tuple(tags), messages, retryable))
        else:
            applied += 1
    return applied, tuple(failures)


class BulkRunner:
    """One bulk tag run for a client; the waits are bounded, then ShopifyUnavailable."""

    def __init__(
        self,
        client: "AdminClient",
        http: httpx.AsyncClient,
        rng: random.Random,
        *,
        poll_initial: float = 0.1,
        poll_max: float = 2.0,
        timeout: float = 6 * 3600.0,
        attempts: int = 6,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.client = client
        self.http = http
        self.rng = rng
        self.poll_initial = poll_initial
        self.poll_max = poll_max
        self.timeout = timeout
        self.attempts = attempts
        # Set when the process is stopping: polling gives up at once, as at its timeout, so
        # the running operation is recorded and read later rather than waited for.
        self.stop = stop

    async def run(
        self, kind: TagKind, lines: Sequence[tuple[int, Sequence[str]]], started: float
    ) -> BulkResult:
        """Run the whole flow for `lines` and report per line."""
        if not lines:
            return BulkResult("", "COMPLETED", None, 0, 0, (), 0.0)
        body = build_jsonl(lines)
        url, parameters = await self._stage(f"segflow-tags-{kind}-{uuid.uuid4().hex}.jsonl")
        await self._upload(url, parameters, body)
        mutation = queries.BULK_TAGS_ADD if kind == "add" else queries.BULK_TAGS_REMOVE
        operation_id = await self._start(mutation, parameters["key"])
        operation = await self._wait(operation_id)
        return await self._result(operation_id, operation, kind, lines, started)

    async def outcome(
        self, kind: TagKind, operation_id: str, lines: Sequence[tuple[int, Sequence[str]]]
    ) -> BulkResult | None:
        """One poll of an operation started earlier: its result once it ended, else None."""
        started = time.monotonic()
        operation = await self._poll(operation_id)
        if operation.get("status") in _RUNNING:
            return None
        return await self._result(operation_id, operation, kind, lines, started)

    async def _result(
        self,
        operation_id: str,
        operation: dict[str, Any],
        kind: TagKind,
        lines: Sequence[tuple[int, Sequence[str]]],
        started: float,
    ) -> BulkResult:
        # No node: Shopify no longer knows the operation (expired, the app reinstalled). Its
        # result cannot be read, so every line counts as not applied and is sent again.
        status = str(operation.get("status") or "NOT_FOUND")
        result_url = (
            operation.get("url") if status == "COMPLETED" else operation.get("partialDataUrl")
        )
        result = await self._download(result_url) if result_url else b""
        applied, failures = parse_result(result, lines, kind)
        return BulkResult(
            operation_id=operation_id,
            status=status,
            error_code=operation.get("errorCode"),
            lines=len(lines),
            applied=applied,
            failures=failures,
            seconds=time.monotonic() - started,
        )

    async def _stage(self, filename: str) -> tuple[str, dict[str, str]]:
        variables = {
            "input": [
                {
                    "resource": "BULK_MUTATION_VARIABLES",
                    "filename": filename,
                    "mimeType": "text/jsonl",
                    "httpMethod": "POST",
                }
            ]
        }
        data = await self.client.execute(
            "staged_uploads_create", queries.STAGED_UPLOADS_CREATE, variables, queries.MUTATION_COST
        )
        payload = data["stagedUploadsCreate"] or {}
        targets = payload.get("stagedTargets") or []
        if payload.get("userErrors") or not targets:
            raise ShopifyBulkError(payload.get("userErrors"))
        target = targets[0]
        return str(target["url"]), {p["name"]: p["value"] for p in target["parameters"]}

    async def _upload(self, url: str, parameters: dict[str, str], body: bytes) -> None:
        """POST the file as the multipart form the staged target asks for (no access token:
        the target is storage, authorised by its parameters)."""
        backoff = Backoff(0.5, 10.0, self.rng)
        reason = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self.http.post(
                    url, data=parameters, files={"file": ("variables.jsonl", body, "text/jsonl")}
                )
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            else:
                if response.status_code < 300:
                    return
                if response.status_code < 500:
                    raise ShopifyBulkError(f"upload refused: HTTP {response.status_code}")
                reason = f"upload_http_{response.status_code}"
            if attempt < self.attempts:
                await asyncio.sleep(backoff.delay(attempt))
        raise ShopifyUnavailable(reason, self.attempts, "bulk_upload")

    async def _start(self, mutation: str, path: str) -> str:
        backoff = Backoff(1.0, 30.0, self.rng)
        for attempt in range(1, self.attempts + 1):
            data = await self.client.execute(
                "bulk_run",
                queries.BULK_RUN_MUTATION,
                {"mutation": mutation, "path": path},
                queries.MUTATION_COST,
            )
            payload = data["bulkOperationRunMutation"] or {}
            operation = payload.get("bulkOperation")
            if operation:
                return str(operation["id"])
            errors = payload.get("userErrors") or []
            if not any(e.get("code") == "OPERATION_IN_PROGRESS" for e in errors):
                raise ShopifyBulkError(errors)
            if attempt < self.attempts:
                await asyncio.sleep(backoff.delay(attempt))
        raise ShopifyUnavailable("bulk_operation_in_progress", self.attempts, "bulk_run")

    async def _wait(self, operation_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        delay = self.poll_initial
        while True:
            operation = await self._poll(operation_id)
            if operation.get("status") not in _RUNNING:
                return operation
            if self._stopping() or time.monotonic() + delay > deadline:
                raise ShopifyBulkPending(operation_id)
            if self.stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
            delay = min(delay * 2, self.poll_max)

    def _stopping(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def _poll(self, operation_id: str) -> dict[str, Any]:
        data = await self.client.execute(
            "bulk_poll", queries.BULK_OPERATION, {"id": operation_id}, 1
        )
        operation: dict[str, Any] = data["node"] or {}
        return operation

    async def _download(self, url: str) -> bytes:
        backoff = Backoff(0.5, 10.0, self.rng)
        reason = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self.http.get(url)
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            else:
                if response.status_code == 200:
                    return response.content
                reason = f"result_http_{response.status_code}"
            if attempt < self.attempts:
                await asyncio.sleep(backoff.delay(attempt))
        raise ShopifyUnavailable(reason, self.attempts, "bulk_result")
