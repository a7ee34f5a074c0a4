"""Custom behavioural events and Shopify Flow requests, authenticated per shop."""

from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from services.common.envelope import decode_envelope
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop


def event(n: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": f"ev-{n}",
        "type": "product_viewed",
        "customer_id": "820982911946154508",
        "occurred_at": "2025-03-01T10:00:00-05:00",
        "properties": {"product_id": 632910392, "price": 19.99},
    }
    body.update(overrides)
    return body


def bearer(shop: ShopCredentials) -> dict[str, str]:
    return {"Authorization": f"Bearer {shop.api_token}"}


async def test_one_event_is_published_with_its_shop_and_customer(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        response = await client.post("/v1/events", json=event(1), headers=bearer(shop))
    assert response.status_code == 202, response.text
    assert response.json() == {"status": "accepted", "accepted": 1, "event_ids": ["ev-1"]}
    [record] = await read_topic(settings.topic_events, 1)
    envelope = decode_envelope(record.value)
    assert record.key == f"{shop.domain}/820982911946154508".encode()
    assert envelope.topic == "custom/product_viewed"
    assert envelope.source == "custom"
    assert envelope.shop == shop.domain
    assert envelope.occurred_at.isoformat() == "2025-03-01T15:00:00+00:00"
    assert Decimal(str(envelope.payload["properties"]["price"])) == Decimal("19.99")


async def test_gid_customer_ids_are_normalised(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = event(1, customer_id="gid://shopify/Customer/820982911946154508")
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        response = await client.post("/v1/events", json=body, headers=bearer(shop))
    assert response.status_code == 202, response.text
    [record] = await read_topic(settings.topic_events, 1)
    assert decode_envelope(record.value).customer_id == "820982911946154508"


async def test_batch_publishes_every_event(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    events = [event(n, customer_id=str(1000 + n % 7)) for n in range(50)]
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        response = await client.post(
            "/v1/events/batch", json={"events": events}, headers=bearer(shop)
        )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 50
    records = await read_topic(settings.topic_events, 50)
    ids = sorted(decode_envelope(r.value).event_id for r in records)
    assert ids == sorted(f"ev-{n}" for n in range(50))
    # All events of one customer share a partition.
    by_customer: dict[bytes | None, set[int]] = {}
    for record in records:
        by_customer.setdefault(record.key, set()).add(record.partition)
    assert all(len(partitions) == 1 for partitions in by_customer.values())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [event(0), event(1, customer_id="abc")]}, "events[1].customer_id"),
        ({"events": [event(0, type="teleported")]}, "events[0].type"),
        (
            {"events": [{k: v for k, v in event(0).items() if k != "event_id"}]},
            "events[0].event_id",
        ),
        ({"events": [event(0, occurred_at="2025-03-01T10:00:00")]}, "events[0].occurred_at"),
        ({"events": []}, "events"),
        ({}, "events"),
    ],
)
async def test_batch_with_an_invalid_event_is_refused_whole(
    ingest_url: str, shop: ShopCredentials, body: dict[str, Any], field: str
) -> None:
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        response = await client.post("/v1/events/batch", json=body, headers=bearer(shop))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


async def test_batch_over_the_limit_is_refused(ingest_url: str, shop: ShopCredentials) -> None:
    body = {"events": [event(n) for n in range(1001)]}
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        response = await client.post("/v1/events/batch", json=body, headers=bearer(shop))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "batch_too_large"


async def test_events_need_the_shops_bearer_token(
    ingest_url: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        missing = await client.post("/v1/events", json=event(1))
        wrong = await client.post(
            "/v1/events", json=event(1), headers={"Authorization": "Bearer sfapi_nope"}
        )
        # The webhook secret is not an API token.
        secret = await client.post(
            "/v1/events", json=event(1), headers={"Authorization": f"Bearer {shop.webhook_secret}"}
        )
    for response in (missing, wrong, secret):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_each_shops_token_publishes_for_that_shop_only(
    ingest_url: str,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    settings: Settings,
    read_topic: Any,
) -> None:
    other = await create_shop(db, "other.myshopify.com")
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        for creds in (shop, other):
            response = await client.post("/v1/events", json=event(1), headers=bearer(creds))
            assert response.status_code == 202
    records = await read_topic(settings.topic_events, 2)
    assert sorted(decode_envelope(r.value).shop for r in records) == sorted(
        [shop.domain, other.domain]
    )


async def test_flow_request_is_published_as_flow_topic(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = {
        "event_id": "order-450789469-vip",
        "event": "vip_candidate",
        "customer_id": "820982911946154508",
        "properties": {"order_total": "1500.00"},
    }
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        refused = await client.post(
            "/webhooks/flow", json=body, headers={"X-Segflow-Flow-Secret": "sfflow_wrong"}
        )
        accepted = await client.post(
            "/webhooks/flow", json=body, headers={"X-Segflow-Flow-Secret": shop.flow_secret}
        )
    assert refused.status_code == 401
    assert accepted.status_code == 200, accepted.text
    [record] = await read_topic(settings.topic_events, 1)
    envelope = decode_envelope(record.value)
    assert envelope.topic == "flow/vip_candidate"
    assert envelope.source == "flow"
    assert envelope.event_id == "order-450789469-vip"
    assert envelope.payload["properties"] == {"order_total": "1500.00"}
