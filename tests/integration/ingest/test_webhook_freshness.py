"""X-Shopify-Triggered-At freshness: genuine retries pass, verbatim replays of old captures
do not."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.common.envelope import decode_envelope
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.ingest.app import create_app
from tests.helpers import free_port, start_server
from tests.integration.ingest.test_shopify_webhook import (
    ORDER,
    post,
    shopify_time,
    webhook_headers,
)


async def test_a_retry_hours_after_its_trigger_is_accepted_with_its_own_time(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    # Shopify retries for 4 hours and a retry keeps the first trigger time: 5 hours must pass.
    triggered = (datetime.now(UTC) - timedelta(hours=5)).replace(microsecond=0)
    body = json.dumps(ORDER).encode()
    headers = webhook_headers(shop, body, **{"X-Shopify-Triggered-At": shopify_time(triggered)})
    response = await post(ingest_url, body, headers)
    assert response.status_code == 200, response.text
    [record] = await read_topic(settings.topic_events, 1)
    assert decode_envelope(record.value).occurred_at == triggered


async def test_a_delivery_without_the_header_is_accepted_at_its_receipt_time(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = json.dumps(ORDER).encode()
    headers = webhook_headers(shop, body)
    del headers["X-Shopify-Triggered-At"]
    response = await post(ingest_url, body, headers)
    assert response.status_code == 200, response.text
    [record] = await read_topic(settings.topic_events, 1)
    envelope = decode_envelope(record.value)
    assert envelope.occurred_at == envelope.received_at


async def test_a_stale_replay_is_refused_counted_and_not_published(
    ingest_url: str, shop: ShopCredentials, settings: Settings, read_topic: Any
) -> None:
    body = json.dumps(ORDER).encode()
    old = shopify_time(datetime.now(UTC) - timedelta(seconds=settings.webhook_max_age_seconds + 60))
    stale = webhook_headers(shop, body, **{"X-Shopify-Triggered-At": old})
    refused = await post(ingest_url, body, stale)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "stale_webhook"
    # The same body, freshly triggered under another event id, still goes through: only the
    # stale delivery was refused, and it never reached Kafka.
    fresh = webhook_headers(shop, body, **{"X-Shopify-Event-Id": "fresh-1"})
    assert (await post(ingest_url, body, fresh)).status_code == 200
    [record] = await read_topic(settings.topic_events, 1)
    assert decode_envelope(record.value).event_id == "fresh-1"
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        metrics = (await client.get("/metrics")).text
    assert 'requests_total{endpoint="shopify",outcome="stale_webhook"} 1.0' in metrics


@pytest.fixture
async def windowless_ingest(settings: Settings) -> AsyncIterator[str]:
    """Ingest with the freshness window off, as `segflow dev` runs it for `segflow demo`."""
    port = free_port()
    off = settings.model_copy(update={"webhook_max_age_seconds": 0, "ingest_port": port})
    server = make_server(create_app(off), "127.0.0.1", port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_with_the_window_off_history_is_accepted_but_the_future_is_not(
    windowless_ingest: str, shop: ShopCredentials
) -> None:
    body = json.dumps(ORDER).encode()
    year_ago = shopify_time(datetime.now(UTC) - timedelta(days=365))
    headers = webhook_headers(shop, body, **{"X-Shopify-Triggered-At": year_ago})
    assert (await post(windowless_ingest, body, headers)).status_code == 200
    ahead = shopify_time(datetime.now(UTC) + timedelta(hours=1))
    headers = webhook_headers(shop, body, **{"X-Shopify-Triggered-At": ahead})
    response = await post(windowless_ingest, body, headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "webhook_from_future"
    # The edge of the calendar, with no UTC form: refused as a header, not a 500.
    headers = webhook_headers(shop, body, **{"X-Shopify-Triggered-At": "0001-01-01T00:00:00+14:00"})
    response = await post(windowless_ingest, body, headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_header"


def test_the_window_must_stay_within_the_dedupe_retention() -> None:
    with pytest.raises(ValueError, match="dedupe_retention_days"):
        Settings(webhook_max_age_seconds=7 * 86400 + 1, dedupe_retention_days=7)
    # The shortest retention still takes the default window.
    assert Settings(dedupe_retention_days=1).webhook_max_age_seconds == 86400
