"""Hostile input to the segmenter API and the tagger's API, over real HTTP: every case a clear
4xx with a JSON body naming the problem, and the process still serving after it."""

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry

from services.api.app import create_app
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules.compile_py import compile_conditions
from services.segmenter.domain.state import CustomerState
from services.segmenter.storage.queries import save_customers
from services.tagger.app import create_app as create_tagger_app
from services.tagger.service import TaggerHealth
from tests.helpers import free_port, start_server

NOW = datetime(2026, 6, 1, tzinfo=UTC)
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}
SQL_LOOKING = "'; DROP TABLE customers; --"
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def limits(settings: Settings) -> Settings:
    """The test's settings with a small body limit (so a test's body crosses it cheaply), one
    that still takes the deep JSON below (200 KB)."""
    return settings.model_copy(update={"api_max_body_bytes": 256 * 1024})


@pytest.fixture
async def api(limits: Settings) -> AsyncIterator[str]:
    server = make_server(create_app(limits, clock=lambda: NOW), "127.0.0.1", limits.api_port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{limits.api_port}"
    server.should_exit = True
    await task


@pytest.fixture
async def tagger(limits: Settings) -> AsyncIterator[str]:
    app = create_tagger_app(limits, TaggerHealth(), CollectorRegistry())
    server = make_server(app, "127.0.0.1", limits.tagger_port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{limits.tagger_port}"
    server.should_exit = True
    await task


def client(url: str, shop: ShopCredentials, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {shop.api_token}", **headers}, timeout=30
    )


async def chunks(body: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    """The body as a chunked upload: no Content-Length for the server to check first."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def segment_body(padding: int) -> bytes:
    return (
        b'{"handle": "vip", "name": "VIP", "description": "'
        + b"x" * padding
        + b'", "conditions": {"all": []}}'
    )


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


@pytest.mark.parametrize("path", ["/v1/segments", "/v1/segments/preview", "/v1/segments/1"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_413_whether_declared_or_chunked(
    api: str, shop: ShopCredentials, limits: Settings, path: str, declared: bool
) -> None:
    body = segment_body(limits.api_max_body_bytes)
    content: bytes | AsyncIterator[bytes] = body if declared else chunks(body)
    method = "PUT" if path == "/v1/segments/1" else "POST"
    async with client(api, shop) as http:
        response = await http.request(method, path, content=content)
        error = assert_error(response, 413, "payload_too_large")
        assert str(limits.api_max_body_bytes) in error["message"]
        metrics = (await http.get("/metrics")).text
        # The process goes on serving.
        assert (await http.get("/v1/segments")).status_code == 200
    assert "segflow_api_payload_too_large_total 1.0" in metrics


async def test_a_body_just_under_the_limit_is_read(
    api: str, shop: ShopCredentials, limits: Settings
) -> None:
    body = segment_body(limits.api_max_body_bytes - 200)
    assert len(body) <= limits.api_max_body_bytes
    async with client(api, shop) as http:
        response = await http.post("/v1/segments", content=chunks(body))
    # Read whole and judged on its merits: a description over 2000 characters.
    error = assert_error(response, 400, "invalid_request")
    assert error["field"] == "description"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_the_tagger_api_caps_bodies_too(
    tagger: str, shop: ShopCredentials, limits: Settings, declared: bool
) -> None:
    body = b'{"handle": "j", "name": "' + b"x" * limits.api_max_body_bytes + b'"}'
    content: bytes | AsyncIterator[bytes] = body if declared else chunks(body)
    async with client(tagger, shop, **{"Content-Type": "application/json"}) as http:
        response = await http.post("/v1/journeys", content=content)
        assert_error(response, 413, "payload_too_large")
        assert (await http.get("/v1/journeys")).status_code == 200
        metrics = (await http.get("/metrics")).text
    assert "segflow_tagger_api_payload_too_large_total 1.0" in metrics


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "field"),
    [
        pytest.param(DEEP, "application/json", 400, "invalid_json", "body", id="deep-json"),
        pytest.param(b'{"a": "\xff\xfe"}', "application/json", 400, "invalid_json", "body",
                     id="invalid-utf8"),
        pytest.param(b"conditions=all", "application/x-www-form-urlencoded", 400,
                     "invalid_json", "body", id="form-body"),
        pytest.param(b"<xml/>", "text/xml", 400, "invalid_json", "body", id="xml"),
        pytest.param(b"", "application/json", 400, "invalid_json", "body", id="empty"),
        pytest.param(b'{"conditions": {"all": []}, "sample": 1e999}', "application/json", 400,
                     "invalid_request", "sample", id="huge-number"),
        pytest.param(b'{"conditions": NaN}', "application/json", 400, "invalid_json", "body",
                     id="nan"),
        pytest.param(b'{"conditions": {}, "sample": ' + b"1" * 5000 + b"}", "application/json",
                     400, "invalid_json", "body", id="long-integer"),
    ],
)  # fmt: skip
async def test_bodies_that_are_not_what_the_api_reads(
    api: str,
    shop: ShopCredentials,
    body: bytes,
    content_type: str,
    status: int,
    code: str,
    field: str,
) -> None:
    async with client(api, shop, **{"Content-Type": content_type}) as http:
        response = await http.post("/v1/segments/preview", content=body)
        error = assert_error(response, status, code)
        assert error.get("field") == field
        assert (await http.get("/healthz")).status_code == 200


async def test_the_content_type_is_not_consulted_a_json_body_is_read(
    api: str, shop: ShopCredentials
) -> None:
    # `curl -d` sends form-encoded: the README's examples rely on the body alone.
    async with client(api, shop, **{"Content-Type": "application/x-www-form-urlencoded"}) as http:
        body = orjson.dumps({"conditions": VIP})
        response = await http.post("/v1/segments/preview", content=body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (DEEP, "application/json", "invalid_request"),
        (b'{"handle": "\xff"}', "application/json", "invalid_request"),
        (b'{"handle": "j"}', "text/plain", "invalid_request"),
        (b"handle=j", "application/x-www-form-urlencoded", "invalid_request"),
        (b'{"handle": ' + b"1" * 5000 + b"}", "application/json", "invalid_request"),
    ],
    ids=["deep-json", "invalid-utf8", "text-plain", "form", "long-integer"],
)
async def test_the_tagger_api_refuses_bodies_it_cannot_read_with_400(
    tagger: str, shop: ShopCredentials, body: bytes, content_type: str, code: str
) -> None:
    async with client(tagger, shop, **{"Content-Type": content_type}) as http:
        response = await http.post("/v1/journeys", content=body)
        assert_error(response, 400, code)
        assert (await http.get("/healthz")).status_code == 200


async def store_customers(db: asyncpg.Connection, shop_id: int, cities: dict[int, str]) -> None:
    rows = []
    for customer_id, city in cities.items():
        state = CustomerState(shop_id, customer_id)
        facts = CustomerFacts(shop_id, customer_id, total_spent=Decimal("0"), city=city)
        rows.append((state, facts, NOW, None))
    await db.execute(
        "INSERT INTO customers (shop_id, customer_id) SELECT $1, unnest($2::bigint[])",
        shop_id,
        list(cities),
    )
    await save_customers(db, rows)


async def test_a_sql_looking_rule_value_is_stored_and_matched_as_a_plain_string(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    await store_customers(db, shop.shop_id, {1: SQL_LOOKING, 2: "Paris"})
    rule = {"all": [{"name": "city", "operator": "equal_to", "value": SQL_LOOKING}]}
    async with client(api, shop) as http:
        created = await http.post(
            "/v1/segments", json={"handle": "odd-city", "name": SQL_LOOKING, "conditions": rule}
        )
        assert created.status_code == 201, created.text
        segment = created.json()
        # The SQL backfill bound it as a parameter: exactly the one customer, nothing dropped.
        assert segment["backfill"]["entered"] == 1
        assert segment["name"] == SQL_LOOKING
        stored = (await http.get(f"/v1/segments/{segment['id']}")).json()
        assert stored["conditions"] == rule
        members = (await http.get(f"/v1/segments/{segment['id']}/customers")).json()
        assert [m["customer_id"] for m in members["customers"]] == ["1"]
        preview = (await http.post("/v1/segments/preview", json={"conditions": rule})).json()
        assert preview == {"count": 1, "sample": ["1"]}
    assert await db.fetchval("SELECT count(*) FROM customers WHERE shop_id = $1", shop.shop_id) == 2
    # The compiled evaluator (the live path) reads it as a string too.
    matches = compile_conditions(rule)
    facts = CustomerFacts(shop.shop_id, 1, city=SQL_LOOKING)
    assert matches(facts, NOW)
    assert not matches(replace(facts, city="Paris"), NOW)


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({"name": "email; DROP", "operator": "equal_to", "value": "x"}, "conditions.all[0].name"),
        ({"name": "email", "operator": "equal_to; --", "value": "x"}, "conditions.all[0].operator"),
        ({"name": "__class__", "operator": "equal_to", "value": "x"}, "conditions.all[0].name"),
    ],
    ids=["variable", "operator", "dunder"],
)
async def test_an_unknown_variable_or_operator_is_422_naming_it(
    api: str, shop: ShopCredentials, condition: dict[str, Any], field: str
) -> None:
    async with client(api, shop) as http:
        rule = {"all": [condition]}
        response = await http.post("/v1/segments/preview", json={"conditions": rule})
    error = assert_error(response, 422, "invalid_rule")
    assert error["field"] == field
    word = condition["name"] if field.endswith(".name") else condition["operator"]
    assert word in error["message"]


@pytest.fixture
async def limited_api(settings: Settings) -> AsyncIterator[tuple[str, Settings]]:
    """The API with tiny per-shop limits: 2 reads and 1 write, then a token per 100 s."""
    port = free_port()
    tight = settings.model_copy(
        update={
            "api_port": port,
            "rate_limit_read_per_second": 0.01,
            "rate_limit_read_burst": 2,
            "rate_limit_write_per_second": 0.01,
            "rate_limit_write_burst": 1,
        }
    )
    server = make_server(create_app(tight, clock=lambda: NOW), "127.0.0.1", port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{port}", tight
    server.should_exit = True
    await task


def assert_rate_limited(response: httpx.Response) -> None:
    assert_error(response, 429, "rate_limited")
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1


async def test_each_shop_is_limited_per_class_with_429_and_retry_after(
    limited_api: tuple[str, Settings], shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    url, _ = limited_api
    other = await create_shop(db, "other-shop.myshopify.com")
    async with client(url, shop) as http:
        # The fast-path lookup and the FastAPI reads share the shop's read bucket.
        assert (await http.get("/v1/customers/1/segments")).status_code == 404
        assert (await http.get("/v1/segments")).status_code == 200
        assert_rate_limited(await http.get("/v1/customers/1/segments"))
        assert_rate_limited(await http.get("/v1/segments"))
        # Writes have a bucket of their own.
        write = await http.post("/v1/segments/preview", json={"conditions": VIP})
        assert write.status_code == 200, write.text
        assert_rate_limited(await http.post("/v1/segments/preview", json={"conditions": VIP}))
        # Unauthenticated requests are refused before any bucket (401, not 429).
        anonymous = await http.get("/v1/segments", headers={"Authorization": "Bearer nope"})
        assert anonymous.status_code == 401
        # Health and metrics are not limited.
        assert (await http.get("/healthz")).status_code == 200
        metrics = (await http.get("/metrics")).text
    async with client(url, other) as http:
        assert (await http.get("/v1/segments")).status_code == 200
    assert 'segflow_api_rate_limited_total{endpoint_class="read"} 2.0' in metrics
    assert 'segflow_api_rate_limited_total{endpoint_class="write"} 1.0' in metrics


async def test_the_tagger_api_is_limited_per_shop_too(
    settings: Settings, shop: ShopCredentials
) -> None:
    port = free_port()
    tight = settings.model_copy(
        update={"tagger_port": port, "rate_limit_read_per_second": 0.01, "rate_limit_read_burst": 1}
    )
    server = make_server(
        create_tagger_app(tight, TaggerHealth(), CollectorRegistry()), "127.0.0.1", port
    )
    task = await start_server(server)
    try:
        async with client(f"http://127.0.0.1:{port}", shop) as http:
            assert (await http.get("/v1/journeys")).status_code == 200
            assert_rate_limited(await http.get("/v1/journeys"))
            metrics = (await http.get("/metrics")).text
    finally:
        server.should_exit = True
        await task
    assert 'segflow_tagger_api_rate_limited_total{endpoint_class="read"} 1.0' in metrics


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/1%27%3B%20DROP%20TABLE%20customers%3B%20--/segments",
        "/v1/customers/1%20OR%201%3D1",
        "/v1/segments/1%3B%20DELETE%20FROM%20segments",
        "/v1/segments/1%27--/customers",
    ],
)
async def test_sql_looking_path_ids_and_tokens_are_plain_refusals(
    api: str, shop: ShopCredentials, db: asyncpg.Connection, path: str
) -> None:
    async with client(api, shop) as http:
        assert_error(await http.get(path), 404, "not_found")
        forged = await http.get("/v1/segments", headers={"Authorization": f"Bearer {SQL_LOOKING}"})
        assert_error(forged, 401, "unauthorized")
    assert await db.fetchval("SELECT count(*) FROM shops") == 1


async def test_every_refusal_is_counted_by_its_code(api: str, shop: ShopCredentials) -> None:
    async with client(api, shop) as http:
        bad_rule = {"conditions": {"all": [{"name": "email; DROP", "operator": "equal_to"}]}}
        assert (await http.post("/v1/segments/preview", json=bad_rule)).status_code == 422
        assert (await http.get("/v1/segments/999999")).status_code == 404
        assert (await http.post("/v1/segments", content=b"[")).status_code == 400
        metrics = (await http.get("/metrics")).text
    counted = {
        code: value
        for code in ("invalid_rule", "not_found", "invalid_json")
        for line in metrics.splitlines()
        if line.startswith(f'segflow_http_errors_total{{code="{code}"}}')
        for value in [float(line.split()[-1])]
    }
    assert counted == {"invalid_rule": 1.0, "not_found": 1.0, "invalid_json": 1.0}
