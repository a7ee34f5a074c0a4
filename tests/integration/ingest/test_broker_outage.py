"""With the broker down ingest answers 503; the delivery Shopify retries afterwards lands once."""

import asyncio
import json
from typing import Any

import httpx

from services.common.kafka import ensure_topics
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.common.signing import sign_webhook
from services.ingest.app import create_app
from tests.helpers import drain_topic, start_server


async def test_broker_down_gives_503_and_the_retry_lands_once(
    settings: Settings, shop: ShopCredentials, broker_factory: Any
) -> None:
    broker = await broker_factory.start()
    own = settings.model_copy(
        update={"kafka_bootstrap_servers": broker.bootstrap_servers, "produce_timeout_seconds": 1.5}
    )
    topics = [own.topic_events, own.topic_segment_changes, own.topic_dead_letter]
    await ensure_topics(broker.bootstrap_servers, topics, own.topic_partitions)
    server = make_server(create_app(own), "127.0.0.1", own.ingest_port)
    task = await start_server(server)
    try:
        body = json.dumps({"id": 1, "customer": {"id": 42}}).encode()
        headers = {
            "X-Shopify-Topic": "orders/paid",
            "X-Shopify-Shop-Domain": shop.domain,
            "X-Shopify-Hmac-Sha256": sign_webhook(body, shop.webhook_secret),
            "X-Shopify-Webhook-Id": "w-1",
            "X-Shopify-Event-Id": "e-1",
        }
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{own.ingest_port}", timeout=10
        ) as client:
            broker.stop()
            refused = await client.post("/webhooks/shopify", content=body, headers=headers)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == str(own.retry_after_seconds)
            assert refused.json()["error"]["code"] == "broker_unavailable"
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["kafka"] is False

            # The embedded broker keeps topics in memory only: it comes back empty.
            await broker_factory.start(port=broker.port)
            await ensure_topics(broker.bootstrap_servers, topics, own.topic_partitions)

            # Shopify retries the same delivery until it gets a 2xx.
            async with asyncio.timeout(30):
                while True:
                    retried = await client.post("/webhooks/shopify", content=body, headers=headers)
                    if retried.status_code == 200:
                        break
                    assert retried.status_code == 503, retried.text
        records = await drain_topic(broker.bootstrap_servers, own.topic_events)
        assert len(records) == 1
    finally:
        server.should_exit = True
        await task
