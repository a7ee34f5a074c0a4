"""Signed Shopify webhooks over real HTTP into a real Kafka-protocol broker."""

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.common.envelope import decode_envelope
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.common.signing import sign_webhook

BIG_CUSTOMER = 820982911946154508
# A minute ago, with nanoseconds as Shopify may send them (inside the freshness window).
TRIGGERED = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=123456)
TRIGGERED_HEADER = f"{TRIGGERED:%Y-%m-%dT%H:%M:%S}.123456789Z"


def shopify_time(moment: datetime) -> str:
    """An X-Shopify-Triggered-At value for `moment`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ORDER = {
    "id": 820982911946154600,
    "email": "jon@example.com",
    "created_at": "2025-03-01T10:00:00-05:00",
    "total_price": "1500.00",
    "customer": {"id": BIG_CUSTOMER, "email": "jon@example.com"},
    "refunds": [{"id": 1, "refund_line_items": [{"subtotal": 10.95}]}],
}


def webhook_headers(
    shop: ShopCredentials, body: bytes, topic: str = "orders/create", **extra: str
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop.domain,
        "X-Shopify-Hmac-Sha256": sign_webhook(body, shop.webhook_secret),
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "X-Shopify-Event-Id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "X-Shopify-Triggered-At": TRIGGERED_HEADER,
        "X-Shopify-API-Version": "2025-07",
    }
    headers.update(extra)
    return headers


async def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.post("/webhooks/shopify", content=body, headers=headers)


async def test_signed_webhook_lands_on_events_topic_keyed_by_customer(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = json.dumps(ORDER).encode()
    response = await post(ingest_url, body, webhook_headers(shop, body))
    assert response.status_code == 200, response.text
    assert response.json()["event_id"] == "98880550-7158-44d4-b7cd-2c97c8a091b5"

    [record] = await read_topic(settings.topic_events, 1)
    assert record.key == f"{shop.domain}/{BIG_CUSTOMER}".encode()
    envelope = decode_envelope(record.value)
    assert envelope.shop == shop.domain
    assert envelope.topic == "orders/create"
    assert envelope.source == "shopify"
    assert envelope.event_id == "98880550-7158-44d4-b7cd-2c97c8a091b5"
    assert envelope.webhook_id == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert envelope.api_version == "2025-07"
    assert envelope.customer_id == str(BIG_CUSTOMER)
    assert envelope.occurred_at == TRIGGERED
    assert envelope.received_at >= envelope.occurred_at
    assert envelope.payload["customer"]["id"] == BIG_CUSTOMER
    assert str(envelope.payload["refunds"][0]["refund_line_items"][0]["subtotal"]) == "10.95"
    assert record.headers["topic"] == b"orders/create"


async def test_event_without_customer_is_keyed_by_shop(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = json.dumps({**ORDER, "customer": None, "email": ""}).encode()
    response = await post(ingest_url, body, webhook_headers(shop, body))
    assert response.status_code == 200, response.text
    [record] = await read_topic(settings.topic_events, 1)
    assert record.key == shop.domain.encode()
    assert decode_envelope(record.value).customer_id is None


async def test_unknown_topic_is_accepted_and_passed_on(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = b'{"id": 5}'
    response = await post(ingest_url, body, webhook_headers(shop, body, topic="inventory/x"))
    assert response.status_code == 200
    [record] = await read_topic(settings.topic_events, 1)
    assert decode_envelope(record.value).topic == "inventory/x"


async def test_webhook_id_is_the_event_id_when_event_id_is_absent(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = b'{"id": 5}'
    headers = webhook_headers(shop, body)
    del headers["X-Shopify-Event-Id"]
    response = await post(ingest_url, body, headers)
    assert response.status_code == 200
    [record] = await read_topic(settings.topic_events, 1)
    assert decode_envelope(record.value).event_id == headers["X-Shopify-Webhook-Id"]


def _bad(shop: ShopCredentials, body: bytes, **changes: str | None) -> tuple[bytes, dict[str, str]]:
    headers = webhook_headers(shop, body)
    for name, value in changes.items():
        header = name.replace("_", "-")
        if value is None:
            headers.pop(header)
        else:
            headers[header] = value
    return body, headers


@pytest.mark.parametrize(
    ("case", "status", "code", "field"),
    [
        ("unknown shop", 401, "unauthorized", None),
        ("missing shop", 401, "unauthorized", None),
        ("wrong signature", 401, "unauthorized", None),
        ("changed body", 401, "unauthorized", None),
        ("missing topic", 400, "missing_header", "X-Shopify-Topic"),
        ("no ids", 400, "missing_header", "X-Shopify-Event-Id"),
        ("bad triggered-at", 400, "invalid_header", "X-Shopify-Triggered-At"),
        ("stale triggered-at", 400, "stale_webhook", "X-Shopify-Triggered-At"),
        ("future triggered-at", 400, "webhook_from_future", "X-Shopify-Triggered-At"),
        ("not json", 400, "invalid_json", "body"),
        ("json array", 400, "invalid_json", "body"),
    ],
)
async def test_bad_input_gets_status_and_json_error(
    ingest_url: str,
    shop: ShopCredentials,
    case: str,
    status: int,
    code: str,
    field: str | None,
) -> None:
    good = json.dumps(ORDER).encode()
    cases: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
        "unknown shop": lambda: _bad(shop, good, X_Shopify_Shop_Domain="other.myshopify.com"),
        "missing shop": lambda: _bad(shop, good, X_Shopify_Shop_Domain=None),
        "wrong signature": lambda: _bad(
            shop, good, X_Shopify_Hmac_Sha256=sign_webhook(good, "wrong")
        ),
        "changed body": lambda: (good.replace(b"1500", b"1501"), webhook_headers(shop, good)),
        "missing topic": lambda: _bad(shop, good, X_Shopify_Topic=None),
        "no ids": lambda: _bad(shop, good, X_Shopify_Event_Id=None, X_Shopify_Webhook_Id=None),
        "bad triggered-at": lambda: _bad(shop, good, X_Shopify_Triggered_At="yesterday"),
        # A body captured a day and a half ago, replayed with its headers as they were.
        "stale triggered-at": lambda: _bad(
            shop, good, X_Shopify_Triggered_At=shopify_time(datetime.now(UTC) - timedelta(hours=36))
        ),
        "future triggered-at": lambda: _bad(
            shop, good, X_Shopify_Triggered_At=shopify_time(datetime.now(UTC) + timedelta(hours=1))
        ),
        "not json": lambda: (b"not json", webhook_headers(shop, b"not json")),
        "json array": lambda: (b"[1]", webhook_headers(shop, b"[1]")),
    }
    body, headers = cases[case]()
    response = await post(ingest_url, body, headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error.get("field") == field

    async with httpx.AsyncClient(base_url=ingest_url) as client:
        metrics = (await client.get("/metrics")).text
    # The metric tells what the answer does not (which of the two 401s it was).
    outcome = {"unknown shop": "unknown_shop", "missing shop": "unknown_shop"}.get(
        case, "invalid_signature" if code == "unauthorized" else code
    )
    assert f'segflow_ingest_requests_total{{endpoint="shopify",outcome="{outcome}"}} 1.0' in metrics


async def test_body_over_the_limit_is_413(
    ingest_url: str, shop: ShopCredentials, settings: Settings
) -> None:
    body = json.dumps({"id": 1, "note": "x" * settings.max_body_bytes}).encode()
    response = await post(ingest_url, body, webhook_headers(shop, body))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_health_readiness_and_metrics(ingest_url: str, shop: ShopCredentials) -> None:
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": True, "kafka": True}
        body = json.dumps(ORDER).encode()
        await client.post("/webhooks/shopify", content=body, headers=webhook_headers(shop, body))
        metrics = (await client.get("/metrics")).text
    assert 'segflow_ingest_requests_total{endpoint="shopify",outcome="accepted"} 1.0' in metrics
    assert 'segflow_ingest_events_total{source="shopify",topic="orders/create"} 1.0' in metrics
    assert "segflow_ingest_produce_seconds_count 1.0" in metrics


async def test_an_unknown_shop_and_a_wrong_signature_answer_alike_and_count_apart(
    ingest_url: str, shop: ShopCredentials
) -> None:
    good = json.dumps(ORDER).encode()
    unknown = await post(ingest_url, *_bad(shop, good, X_Shopify_Shop_Domain="x.myshopify.com"))
    wrong = await post(
        ingest_url, *_bad(shop, good, X_Shopify_Hmac_Sha256=sign_webhook(good, "wrong"))
    )
    # Nothing in the answer tells whether the shop exists (no shop enumeration).
    assert (unknown.status_code, unknown.content) == (wrong.status_code, wrong.content)
    assert dict(unknown.headers).keys() == dict(wrong.headers).keys()
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        metrics = (await client.get("/metrics")).text
    for outcome in ("unknown_shop", "invalid_signature"):
        assert f'endpoint="shopify",outcome="{outcome}"}} 1.0' in metrics


async def test_a_captured_update_replayed_as_a_delete_is_refused_and_not_published(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    update = json.dumps({"id": 207119551, "email": "bob@example.com", "addresses": []}).encode()
    # The same signed bytes under another topic header (Shopify signs only the body).
    replay = await post(ingest_url, update, webhook_headers(shop, update, "customers/delete"))
    assert replay.status_code == 400, replay.text
    error = replay.json()["error"]
    assert (error["code"], error["field"]) == ("payload_does_not_fit_topic", "body")
    assert "email" in error["message"]
    genuine = json.dumps({"id": 207119551, "phone": None, "addresses": []}).encode()
    headers = webhook_headers(shop, genuine, "customers/delete", **{"X-Shopify-Event-Id": "d-1"})
    accepted = await post(ingest_url, genuine, headers)
    assert accepted.status_code == 200, accepted.text
    [record] = await read_topic(settings.topic_events, 1)
    assert decode_envelope(record.value).event_id == "d-1"
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        metrics = (await client.get("/metrics")).text
    assert 'outcome="payload_does_not_fit_topic"} 1.0' in metrics
