"""Tenant-chosen values (webhook topic headers, Flow event names) never become metric labels."""

import json

import httpx

from services.common.shops import ShopCredentials
from tests.integration.ingest.test_shopify_webhook import ORDER, webhook_headers


async def test_invented_topics_and_flow_events_collapse_to_bounded_labels(
    ingest_url: str, shop: ShopCredentials
) -> None:
    body = json.dumps(ORDER).encode()
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as client:
        for i in range(12):
            headers = webhook_headers(
                shop, body, topic=f"invented/topic-{i}", **{"X-Shopify-Event-Id": f"ev-{i}"}
            )
            response = await client.post("/webhooks/shopify", content=body, headers=headers)
            assert response.status_code == 200, response.text
            flow = {"event_id": f"flow-{i}", "event": f"made_up_{i}", "customer_id": "7"}
            response = await client.post(
                "/webhooks/flow", json=flow, headers={"X-Segflow-Flow-Secret": shop.flow_secret}
            )
            assert response.status_code == 200, response.text
        metrics = (await client.get("/metrics")).text
    assert 'segflow_ingest_events_total{source="shopify",topic="other"} 12.0' in metrics
    assert 'segflow_ingest_events_total{source="flow",topic="flow"} 12.0' in metrics
    assert "invented" not in metrics and "made_up" not in metrics
