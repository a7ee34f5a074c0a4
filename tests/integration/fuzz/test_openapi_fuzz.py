"""Schemathesis against the OpenAPI documents of ingest and the API, each served for real (real
PostgreSQL, the broker for ingest), authenticated as a shop: no 5xx, every refusal a JSON error
body, responses as documented where the document says, and the process healthy after.

Bounded and derandomized (a fixed seed per operation), so the same cases run every time.
"""

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from services.common.shops import ShopCredentials
from tests.integration.api.test_hostile_input import api as api  # noqa: F401 (fixture)
from tests.integration.api.test_hostile_input import limits as limits  # noqa: F401 (fixture)

EXAMPLES = 12
Check = Callable[..., Any]


def errors_are_json(ctx: Any, response: Response, case: Case[Any]) -> bool | None:
    """Every 4xx carries the JSON error body with a code and a message."""
    if 400 <= response.status_code < 500:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if not (isinstance(error, dict) and error.get("code") and error.get("message")):
            raise AssertionError(f"{response.status_code} without an error body: {body!r}")
    return None


CHECKS: list[Check] = [
    not_a_server_error,
    errors_are_json,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(openapi_url: str, headers: dict[str, str]) -> dict[str, int]:
    """Run every operation's positive and negative cases; the statuses seen, by count."""
    schema = schemathesis.openapi.from_url(openapi_url)
    base_url = openapi_url.removesuffix("/openapi.json")
    seen: dict[str, int] = {}
    with requests.Session() as session:

        def cases_of(operation: Any, mode: GenerationMode) -> Callable[[], None]:
            label = f"{operation.method.upper()} {operation.path}"

            @hypothesis_settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Case[Any]) -> None:
                response = case.call_and_validate(
                    base_url=base_url, session=session, headers=headers, checks=CHECKS
                )
                key = f"{label} {response.status_code}"
                seen[key] = seen.get(key, 0) + 1

            return run

        for result in schema.get_all_operations():
            # An operation the document does not describe soundly fails the test here.
            assert isinstance(result, Ok), result
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    cases_of(result.ok(), mode)()
                except Unsatisfiable:
                    # No invalid request exists for it (no parameters, no body): /healthz.
                    if mode is not GenerationMode.NEGATIVE:
                        raise
    return seen


async def still_serving(url: str, shop: ShopCredentials) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200


async def test_fuzzing_the_api_finds_no_5xx_and_leaves_it_serving(
    api: str,  # noqa: F811
    shop: ShopCredentials,
    db: asyncpg.Connection,
) -> None:
    auth = {"Authorization": f"Bearer {shop.api_token}"}
    seen = await asyncio.to_thread(fuzz, f"{api}/openapi.json", auth)
    # Cases reached past authentication and validation, not only the refusals.
    # Cases reached the rules and the database, not only the refusals.
    for reached in ("POST /v1/segments 201", "POST /v1/segments/preview 200"):
        assert seen.get(reached, 0) >= 1, seen
    await still_serving(api, shop)
    async with httpx.AsyncClient(base_url=api, headers=auth) as client:
        created = await client.post(
            "/v1/segments",
            json={
                "handle": "after-fuzz",
                "name": "After the fuzz",
                "conditions": {
                    "all": [{"name": "orders_count", "operator": "equal_to", "value": 0}]
                },
            },
        )
        assert created.status_code == 201, created.text


async def test_fuzzing_ingest_finds_no_5xx_and_leaves_it_serving(
    ingest_url: str, shop: ShopCredentials
) -> None:
    auth = {
        "Authorization": f"Bearer {shop.api_token}",
        "X-Segflow-Flow-Secret": shop.flow_secret,
    }
    seen = await asyncio.to_thread(fuzz, f"{ingest_url}/openapi.json", auth)
    for path in ("/v1/events", "/v1/events/batch"):
        assert seen.get(f"POST {path} 202", 0) >= 1, seen
    assert seen.get("POST /webhooks/flow 200", 0) >= 1, seen
    await still_serving(ingest_url, shop)
    async with httpx.AsyncClient(base_url=ingest_url, headers=auth) as client:
        event = {"event_id": "after-fuzz", "type": "page_viewed", "customer_id": "1"}
        assert (await client.post("/v1/events", json=event)).status_code == 202
