"""Hostile input to every ingest endpoint, over real HTTP into a real broker: each case a clear
4xx with a JSON body naming the problem (or a documented acceptance), counted, and ingest still
serving after it."""

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from services.common.envelope import decode_envelope
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.common.signing import sign_webhook
from services.ingest.app import create_app
from tests.helpers import free_port, start_server
from tests.integration.ingest.test_shopify_webhook import ORDER, webhook_headers

SQL_LOOKING = "'; DROP TABLE shops; --"
# Custom event ids are printable ASCII without spaces; the same idea in that alphabet.
SQL_TOKEN = "';DROP/**/TABLE/**/shops;--"
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a": ' + DEEP + b"}"


async def chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The body as a chunked upload: no Content-Length for the server to check first."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def bearer(shop: ShopCredentials) -> dict[str, str]:
    return {"Authorization": f"Bearer {shop.api_token}", "Content-Type": "application/json"}


def flow(shop: ShopCredentials) -> dict[str, str]:
    return {"X-Segflow-Flow-Secret": shop.flow_secret, "Content-Type": "application/json"}


# Each endpoint: its path, its metric endpoint label, and the headers for a body.
Headers = Callable[[ShopCredentials, bytes], dict[str, str]]
ENDPOINTS: dict[str, tuple[str, str, Headers]] = {
    "webhook": ("/webhooks/shopify", "shopify", lambda shop, body: webhook_headers(shop, body)),
    "flow": ("/webhooks/flow", "flow", lambda shop, body: flow(shop)),
    "event": ("/v1/events", "events", lambda shop, body: bearer(shop)),
    "batch": ("/v1/events/batch", "events_batch", lambda shop, body: bearer(shop)),
}


async def metrics_of(url: str) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        return (await client.get("/metrics")).text


async def assert_still_serving(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_413_before_it_is_read_whole(
    ingest_url: str, shop: ShopCredentials, settings: Settings, endpoint: str, declared: bool
) -> None:
    path, label, headers_for = ENDPOINTS[endpoint]
    body = b'{"note": "' + b"x" * settings.max_body_bytes + b'"}'
    content: bytes | AsyncIterator[bytes] = body if declared else chunks(body)
    async with httpx.AsyncClient(base_url=ingest_url, timeout=30) as client:
        response = await client.post(path, content=content, headers=headers_for(shop, body))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "body_too_large"
    assert f'endpoint="{label}",outcome="body_too_large"}} 1.0' in await metrics_of(ingest_url)
    await assert_still_serving(ingest_url)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (DEEP_OBJECT, "application/json"),
        (DEEP, "application/json"),
        (b'{"id": 1, "note": "\xff\xfe"}', "application/json"),
        (b"id=1&customer=2", "application/x-www-form-urlencoded"),
        (b"<order/>", "text/xml"),
        (b"", "application/json"),
        (b'{"id": ' + b"9" * 5000 + b"}", "application/json"),
    ],
    ids=["deep-object", "deep-array", "invalid-utf8", "form", "xml", "empty", "long-integer"],
)
async def test_a_body_that_is_not_a_json_object_is_400_invalid_json(
    ingest_url: str, shop: ShopCredentials, endpoint: str, body: bytes, content_type: str
) -> None:
    path, label, headers_for = ENDPOINTS[endpoint]
    headers = {**headers_for(shop, body), "Content-Type": content_type}
    async with httpx.AsyncClient(base_url=ingest_url, timeout=30) as client:
        response = await client.post(path, content=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_json", "body")
    assert f'endpoint="{label}",outcome="invalid_json"}} 1.0' in await metrics_of(ingest_url)
    await assert_still_serving(ingest_url)


async def test_the_content_type_is_not_consulted_a_signed_json_body_is_accepted(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    # Shopify always sends application/json; the body and its signature are what count.
    body = json.dumps(ORDER).encode()
    headers = {**webhook_headers(shop, body), "Content-Type": "text/plain"}
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text
    [record] = await read_topic(settings.topic_events, 1)
    assert decode_envelope(record.value).payload["id"] == ORDER["id"]


async def test_a_replayed_webhook_id_is_accepted_and_published_under_the_same_event_id(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    """Ingest passes a replay on; the segmenter's dedupe on (shop, topic, event id) counts it
    once: tests/integration/segmenter/test_pipeline.py::
    test_a_redelivered_event_is_skipped_and_changes_nothing."""
    body = json.dumps(ORDER).encode()
    headers = webhook_headers(shop, body)
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        first = await client.post("/webhooks/shopify", content=body, headers=headers)
        again = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == again.json()
    records = await read_topic(settings.topic_events, 2)
    envelopes = [decode_envelope(r.value) for r in records]
    assert {(e.shop, e.topic, e.event_id) for e in envelopes} == {
        (shop.domain, "orders/create", headers["X-Shopify-Event-Id"])
    }


async def test_a_body_signed_by_one_shop_under_another_shops_domain_is_401(
    ingest_url: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    victim = await create_shop(db, "victim-shop.myshopify.com")
    body = json.dumps(ORDER).encode()
    forged = {**webhook_headers(shop, body), "X-Shopify-Shop-Domain": victim.domain}
    # The domain differently spelled (case) is the same victim, and as refused.
    spelled = {**forged, "X-Shopify-Shop-Domain": victim.domain.upper()}
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        for headers in (forged, spelled):
            response = await client.post("/webhooks/shopify", content=body, headers=headers)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "unauthorized"
    assert 'endpoint="shopify",outcome="invalid_signature"} 2.0' in await metrics_of(ingest_url)


async def test_sql_looking_header_values_are_plain_strings(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = json.dumps(ORDER).encode()
    odd = webhook_headers(
        shop,
        body,
        **{"X-Shopify-Topic": SQL_LOOKING, "X-Shopify-Event-Id": SQL_LOOKING},
    )
    unknown_shop = {**webhook_headers(shop, body), "X-Shopify-Shop-Domain": SQL_LOOKING}
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        accepted = await client.post("/webhooks/shopify", content=body, headers=odd)
        refused = await client.post("/webhooks/shopify", content=body, headers=unknown_shop)
        event = {"event_id": SQL_TOKEN, "type": "page_viewed", "customer_id": "1"}
        custom = await client.post("/v1/events", json=event, headers=bearer(shop))
    # An unknown topic is passed on (the segmenter ignores it); the ids are the strings sent.
    assert accepted.status_code == 200, accepted.text
    assert refused.status_code == 401
    assert custom.status_code == 202, custom.text
    envelopes = [decode_envelope(r.value) for r in await read_topic(settings.topic_events, 2)]
    assert {(e.topic, e.event_id) for e in envelopes} == {
        (SQL_LOOKING, SQL_LOOKING),
        ("custom/page_viewed", SQL_TOKEN),
    }
    metrics = await metrics_of(ingest_url)
    # The invented topic does not become a metric label.
    assert 'segflow_ingest_events_total{source="shopify",topic="other"} 1.0' in metrics
    assert "DROP" not in metrics


@pytest.fixture
async def limited_ingest(settings: Settings) -> AsyncIterator[str]:
    """Ingest allowing each shop 2 custom-event calls, then one per 100 s."""
    port = free_port()
    tight = settings.model_copy(
        update={
            "ingest_port": port,
            "rate_limit_events_per_second": 0.01,
            "rate_limit_events_burst": 2,
        }
    )
    server = make_server(create_app(tight), "127.0.0.1", port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_custom_events_are_rate_limited_per_shop_but_webhooks_and_flow_never(
    limited_ingest: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    other = await create_shop(db, "other-shop.myshopify.com")
    event = {"event_id": "e", "type": "page_viewed", "customer_id": "1"}
    batch = {"events": [event]}
    async with httpx.AsyncClient(base_url=limited_ingest) as client:
        one = await client.post("/v1/events", json=event, headers=bearer(shop))
        ok = await client.post("/v1/events/batch", json=batch, headers=bearer(shop))
        assert (one.status_code, ok.status_code) == (202, 202)
        for path, body in (("/v1/events", event), ("/v1/events/batch", batch)):
            limited = await client.post(path, json=body, headers=bearer(shop))
            assert limited.status_code == 429, limited.text
            assert limited.json()["error"]["code"] == "rate_limited"
            assert limited.headers["retry-after"].isdigit()
            assert int(limited.headers["retry-after"]) >= 1
        other_shop = await client.post("/v1/events", json=event, headers=bearer(other))
        assert other_shop.status_code == 202
        # Shopify's deliveries and Flow's requests are never limited: refusing them only
        # makes Shopify send them again.
        order = json.dumps(ORDER).encode()
        for n in range(5):
            headers = webhook_headers(shop, order, **{"X-Shopify-Event-Id": f"w-{n}"})
            response = await client.post("/webhooks/shopify", content=order, headers=headers)
            assert response.status_code == 200, response.text
            request = {"event_id": f"f-{n}", "event": "vip", "customer_id": "1"}
            response = await client.post("/webhooks/flow", json=request, headers=flow(shop))
            assert response.status_code == 200, response.text
    metrics = await metrics_of(limited_ingest)
    assert 'segflow_ingest_rate_limited_total{endpoint_class="events"} 2.0' in metrics


async def test_a_wrong_signature_on_random_bytes_is_401_not_a_parse_error(
    ingest_url: str, shop: ShopCredentials
) -> None:
    # The signature is checked before the body is parsed: unsigned garbage learns nothing.
    body = bytes(range(256)) * 4
    headers = {**webhook_headers(shop, body), "X-Shopify-Hmac-Sha256": sign_webhook(body, "x")}
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/v1/events", "/webhooks/flow"])
async def test_a_time_with_no_utc_form_is_400_naming_the_field(
    ingest_url: str, shop: ShopCredentials, path: str
) -> None:
    edge = "0001-01-01T00:00:00+14:00"
    body: dict[str, Any] = {"event_id": "e", "customer_id": "1", "occurred_at": edge}
    body.update({"type": "page_viewed"} if path == "/v1/events" else {"event": "vip"})
    headers = bearer(shop) if path == "/v1/events" else flow(shop)
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_event", "occurred_at")
