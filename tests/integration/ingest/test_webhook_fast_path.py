"""The plain-ASGI /webhooks/shopify endpoint at the edges FastAPI used to handle for it."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.common.envelope import decode_envelope
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.common.signing import sign_webhook
from tests.integration.ingest.test_shopify_webhook import ORDER, webhook_headers


async def metrics_text(url: str) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        return (await client.get("/metrics")).text


def counted(endpoint: str, outcome: str, value: int = 1) -> str:
    return f'segflow_ingest_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}} {value}.0'


async def chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_chunked_body_is_joined_and_accepted(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = json.dumps(ORDER).encode()
    headers = webhook_headers(shop, body)
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        # A generator body goes out chunked, with no Content-Length.
        response = await client.post("/webhooks/shopify", content=chunks(body, 7), headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"status": "accepted", "event_id": headers["X-Shopify-Event-Id"]}
    [record] = await read_topic(settings.topic_events, 1)
    assert record.value.endswith(b',"payload":' + body + b"}")


async def test_chunked_body_over_the_limit_is_413_and_counted(
    ingest_url: str, shop: ShopCredentials, settings: Settings
) -> None:
    body = b'{"note": "' + b"x" * settings.max_body_bytes + b'"}'
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        headers = webhook_headers(shop, body)
        response = await client.post(
            "/webhooks/shopify", content=chunks(body, 64 * 1024), headers=headers
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert counted("shopify", "body_too_large") in await metrics_text(ingest_url)


async def test_declared_length_over_the_limit_is_413_before_the_body_is_sent(
    ingest_url: str, shop: ShopCredentials, settings: Settings
) -> None:
    host, port = ingest_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Shopify-Shop-Domain: " + shop.domain.encode() + b"\r\n"
            b"Content-Length: " + str(settings.max_body_bytes + 1).encode() + b"\r\n\r\n"
        )
        await writer.drain()
        # Not one byte of the body is sent: the answer comes from the header alone.
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        (b"", "not JSON"),
        (b'"a string"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b'{"id": NaN}', "NaN"),
        (b'{"id": 1, "note": "\xff"}', "not UTF-8"),
        (b'\xef\xbb\xbf{"id": 1}', "not JSON"),
    ],
)
async def test_bodies_that_are_not_one_json_object_are_400(
    ingest_url: str, shop: ShopCredentials, body: bytes, message_part: str
) -> None:
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        response = await client.post(
            "/webhooks/shopify", content=body, headers=webhook_headers(shop, body)
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_json", "body")
    assert message_part in error["message"]
    assert counted("shopify", "invalid_json") in await metrics_text(ingest_url)


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"X-Shopify-Hmac-Sha256": None}, 401, "unauthorized", None),
        ({"X-Shopify-Shop-Domain": ""}, 401, "unauthorized", None),
        ({"X-Shopify-Topic": ""}, 400, "missing_header", "X-Shopify-Topic"),
        ({"X-Shopify-Event-Id": "", "X-Shopify-Webhook-Id": None}, 400, "missing_header", None),
    ],
)
async def test_missing_or_empty_headers(
    ingest_url: str,
    shop: ShopCredentials,
    change: dict[str, str | None],
    status: int,
    code: str,
    field: str | None,
) -> None:
    body = json.dumps(ORDER).encode()
    headers = webhook_headers(shop, body)
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert error["field"] == field
    outcome = {
        "X-Shopify-Hmac-Sha256": "invalid_signature",
        "X-Shopify-Shop-Domain": "unknown_shop",
    }
    assert counted("shopify", outcome.get(next(iter(change)), code)) in await metrics_text(
        ingest_url
    )


async def test_a_repeated_header_counts_by_its_first_value(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = b'{"id": 5, "customer": {"id": 7}}'
    headers = [
        *webhook_headers(shop, body, topic="orders/paid").items(),
        ("X-Shopify-Topic", "orders/cancelled"),
    ]
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text
    [record] = await read_topic(settings.topic_events, 1)
    assert decode_envelope(record.value).topic == "orders/paid"


async def test_exact_payload_bytes_and_ids_the_fast_parser_cannot_hold(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    # A customer id written as 1.5E1 and an integer past 64 bits: orjson reads floats there,
    # so the exact parser decides (id 15), and the payload is passed on byte for byte.
    body = b'{"id": 1, "big": 123456789012345678901234567890, "customer": {"id": 1.5E1}}'
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        response = await client.post(
            "/webhooks/shopify", content=body, headers=webhook_headers(shop, body)
        )
    assert response.status_code == 200, response.text
    [record] = await read_topic(settings.topic_events, 1)
    assert record.key == f"{shop.domain}/15".encode()
    assert record.value.endswith(b',"payload":' + body + b"}")


async def test_other_methods_get_405_json(ingest_url: str) -> None:
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        response = await client.get("/webhooks/shopify")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {
        "error": {"code": "method_not_allowed", "message": "Method Not Allowed"}
    }


async def test_accepted_is_counted_with_its_event_and_produce_time(
    ingest_url: str, shop: ShopCredentials
) -> None:
    body = json.dumps(ORDER).encode()
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        for _ in range(2):
            response = await client.post(
                "/webhooks/shopify", content=body, headers=webhook_headers(shop, body)
            )
            assert response.status_code == 200
    metrics = await metrics_text(ingest_url)
    assert counted("shopify", "accepted", 2) in metrics
    assert 'segflow_ingest_events_total{source="shopify",topic="orders/create"} 2.0' in metrics
    assert "segflow_ingest_produce_seconds_count 2.0" in metrics


async def test_openapi_documents_the_webhook(ingest_url: str) -> None:
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        spec = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    operation = spec["paths"]["/webhooks/shopify"]["post"]
    headers = {p["name"] for p in operation["parameters"] if p["required"]}
    assert headers == {"X-Shopify-Shop-Domain", "X-Shopify-Hmac-Sha256", "X-Shopify-Topic"}
    assert set(operation["responses"]) == {"200", "400", "401", "413", "503"}
    assert {"/webhooks/flow", "/v1/events", "/v1/events/batch"} <= set(spec["paths"])
    assert docs.status_code == 200


async def test_signature_is_checked_on_the_exact_bytes(
    ingest_url: str, shop: ShopCredentials
) -> None:
    body = json.dumps(ORDER).encode() + b"  \n"
    headers = webhook_headers(shop, body)
    headers["X-Shopify-Hmac-Sha256"] = sign_webhook(body.strip(), shop.webhook_secret)
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert counted("shopify", "invalid_signature") in await metrics_text(ingest_url)
