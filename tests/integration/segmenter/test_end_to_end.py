"""A signed webhook through ingest, Kafka and the segmenter to a published change and the API."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.api.app import create_app
from services.common.metrics import new_registry
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.common.signing import sign_webhook
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.service import run_segmenter
from services.segmenter.storage.segments import install_templates
from tests.helpers import start_server

CUSTOMER = 820982911946154508


@pytest.fixture
async def segmenter(settings: Settings) -> AsyncIterator[str]:
    """The segmenter (worker, scheduler, REST API) running in this loop; yields the API URL."""
    registry = new_registry()
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        run_segmenter(settings, SegmenterMetrics.create(registry), stop, started=started)
    )
    server = make_server(create_app(settings, registry=registry), "127.0.0.1", settings.api_port)
    api = await start_server(server)
    async with asyncio.timeout(30):
        await started.wait()
    yield f"http://127.0.0.1:{settings.api_port}"
    stop.set()
    server.should_exit = True
    await api
    await task


async def post_webhook(url: str, shop: ShopCredentials, topic: str, payload: Any, n: int) -> None:
    body = json.dumps(payload).encode()
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop.domain,
        "X-Shopify-Hmac-Sha256": sign_webhook(body, shop.webhook_secret),
        "X-Shopify-Webhook-Id": f"w-{n}",
        "X-Shopify-Event-Id": f"e-{n}",
        "X-Shopify-API-Version": "2025-07",
    }
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_an_order_of_1500_for_a_new_customer_makes_them_vip_and_new(
    ingest_url: str,
    segmenter: str,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    settings: Settings,
    read_topic: Any,
) -> None:
    now = datetime.now(UTC)
    await install_templates(db, shop.shop_id, now)
    customer = {
        "id": CUSTOMER,
        "email": "jon@example.com",
        "created_at": (now - timedelta(days=2)).isoformat(),
        "updated_at": (now - timedelta(days=2)).isoformat(),
    }
    order = {
        "id": 450789469,
        "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
        "total_price": "1500.00",
        "customer": customer,
        "line_items": [{"id": 1, "product_id": 632910392, "quantity": 1, "price": "1500.00"}],
    }
    await post_webhook(ingest_url, shop, "customers/create", customer, 1)
    await post_webhook(ingest_url, shop, "orders/create", order, 2)

    headers = {"Authorization": f"Bearer {shop.api_token}"}
    async with httpx.AsyncClient(base_url=segmenter, headers=headers) as client:
        async with asyncio.timeout(15):
            while True:
                response = await client.get(f"/v1/customers/{CUSTOMER}/segments")
                handles = {s["handle"] for s in response.json().get("segments", [])}
                if {"vip", "new-customer"} <= handles:
                    break
                await asyncio.sleep(0.05)
        state = (await client.get(f"/v1/customers/{CUSTOMER}")).json()
    assert state["customer_id"] == str(CUSTOMER)
    assert state["total_spent"] == "1500.00"
    assert state["orders_count"] == 1
    assert {"first-purchase", "big-order", "high-value"} <= handles

    records = await read_topic(settings.topic_segment_changes, len(handles))
    changes = [json.loads(r.value) for r in records]
    vip = next(c for c in changes if c["segment"]["handle"] == "vip")
    assert vip["change"] == "entered"
    assert vip["customer_id"] == str(CUSTOMER)
    assert vip["shop"] == shop.domain
    assert vip["cause_event_id"] == "e-2"
    assert vip["received_at"] is not None
    assert records[0].key == f"{shop.domain}/{CUSTOMER}".encode()
    assert len({c["change_id"] for c in changes}) == len(changes)
    assert len({c["seq"] for c in changes}) == len(changes)

    # Consumers see a change before its publisher has marked and counted it: poll.
    vip_counted = 'segflow_segment_changes_total{change="entered",segment="vip"} 1.0'
    async with httpx.AsyncClient(base_url=segmenter) as client, asyncio.timeout(10):
        while vip_counted not in (metrics := (await client.get("/metrics")).text):
            await asyncio.sleep(0.05)
    assert 'segflow_segmenter_events_total{outcome="applied",topic="orders/create"} 1.0' in metrics
    assert "segflow_segmenter_end_to_end_seconds_count" in metrics


async def test_undecodable_events_go_to_the_dead_letter_topic_with_the_reason(
    segmenter: str, settings: Settings, read_topic: Any, shop: ShopCredentials
) -> None:
    from services.common.kafka import make_producer

    producer = make_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic_events, b"not an envelope", key=b"k")
        bad_order = json.dumps(
            {
                "event_id": "x1",
                "shop": shop.domain,
                "topic": "orders/create",
                "source": "shopify",
                "customer_id": None,
                "occurred_at": "2025-01-01T00:00:00Z",
                "received_at": "2025-01-01T00:00:00Z",
                "payload": {"id": "not-a-number"},
            }
        ).encode()
        await producer.send_and_wait(settings.topic_events, bad_order, key=b"k")
    finally:
        await producer.stop()
    records = await read_topic(settings.topic_dead_letter, 2)
    reasons = sorted(r.headers["reason"].decode() for r in records)
    assert reasons == ["invalid_envelope", "invalid_payload"]
    assert {r.value for r in records} == {b"not an envelope", bad_order}


async def test_a_poison_event_is_dead_lettered_and_the_rest_of_its_batch_applied(
    segmenter: str,
    settings: Settings,
    read_topic: Any,
    shop: ShopCredentials,
    db: asyncpg.Connection,
) -> None:
    from services.common.envelope import EnvelopeMeta, encode_envelope, partition_key
    from services.common.kafka import make_producer

    def order(order_id: int, customer: int, created_at: str) -> bytes:
        meta = EnvelopeMeta(
            event_id=f"o-{order_id}",
            shop=shop.domain,
            topic="orders/create",
            source="shopify",
            customer_id=str(customer),
            occurred_at=datetime.now(UTC),
            received_at=datetime.now(UTC),
        )
        body = {
            "id": order_id,
            "created_at": created_at,
            "total_price": "10.00",
            "customer": {"id": customer},
        }
        return encode_envelope(meta, json.dumps(body).encode())

    # Valid JSON and a valid Shopify order, but a date no arithmetic can move past.
    poison = order(2, 77, "9999-12-31T23:59:59Z")
    producer = make_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    try:
        key = partition_key(shop.domain, "77")
        await producer.send(settings.topic_events, order(1, 77, "2025-01-01T00:00:00Z"), key=key)
        await producer.send(settings.topic_events, poison, key=key)
        await producer.send_and_wait(
            settings.topic_events, order(3, 77, "2025-02-01T00:00:00Z"), key=key
        )
    finally:
        await producer.stop()
    [dead] = await read_topic(settings.topic_dead_letter, 1)
    assert dead.headers["reason"] == b"processing_error"
    assert dead.value == poison
    async with asyncio.timeout(15):
        while await db.fetchval("SELECT orders_count FROM customers WHERE customer_id = 77") != 2:
            await asyncio.sleep(0.05)
