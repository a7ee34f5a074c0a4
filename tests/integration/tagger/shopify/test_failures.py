"""Failures the client retries (5xx, 429 with Retry-After, timeouts) and the bound after which
it gives up with ShopifyUnavailable, against faults injected into the stand-in."""

import asyncio
import random
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.common.metrics import new_registry
from services.shopify_standin.server import RunningStandin
from services.tagger.shopify import AdminClient, ShopifyClientMetrics, ShopifyUnavailable
from services.tagger.shopify.transport import RetryPolicy
from tests.helpers import StandinApi, WebhookReceiver, create_standin_shop, free_port

VERSION = "2026-04"
QUICK = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.05)


@pytest.fixture
async def shop(shopify_standin: RunningStandin, standin_domain: str) -> AsyncIterator[StandinApi]:
    async with httpx.AsyncClient() as http:
        created = await create_standin_shop(
            shopify_standin.url,
            standin_domain,
            customers=[{"id": 1, "email": "ada@example.com"}],
            http=http,
        )
        yield StandinApi(http, shopify_standin.url, created["token"], standin_domain)


@pytest.fixture
def registry() -> CollectorRegistry:
    return new_registry()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
async def client(
    shop: StandinApi, registry: CollectorRegistry, sleeps: list[float]
) -> AsyncIterator[AdminClient]:
    async def recording_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(seconds)

    async with AdminClient(
        shop.domain,
        shop.token,
        VERSION,
        shop.base_url,
        metrics=ShopifyClientMetrics.create(registry),
        policy=QUICK,
        rng=random.Random(7),
        timeout=0.5,
        sleep=recording_sleep,
    ) as admin:
        yield admin


async def fault(shop: StandinApi, **spec: object) -> None:
    await shop.control("POST", f"/shops/{shop.domain}/faults", json=spec)


def requests(registry: CollectorRegistry, result: str) -> float:
    labels = {"operation": "tags_add", "result": result}
    return registry.get_sample_value("segflow_shopify_requests_total", labels) or 0.0


async def test_a_5xx_after_the_write_landed_is_retried_and_applies_once(
    client: AdminClient,
    shop: StandinApi,
    registry: CollectorRegistry,
    webhook_receiver: WebhookReceiver,
) -> None:
    await client.ensure_webhook_subscriptions(webhook_receiver.url, ["CUSTOMER_TAGS_ADDED"])
    await fault(shop, kind="status", status=503, after_execute=True)
    result = await client.tags_add(1, ["vip"])
    assert result.ok and result.tags == ("vip",)
    assert (await shop.control("GET", f"/shops/{shop.domain}/customers/1"))["tags"] == ["vip"]
    assert requests(registry, "http_5xx") == 1 and requests(registry, "ok") == 1
    # One effective change: the retry found the tag there and changed nothing.
    await webhook_receiver.wait_for("customer.tags_added", 1)
    log = await shop.control("GET", "/deliveries", params={"shop": shop.domain})
    assert [d["topic"] for d in log["deliveries"]] == ["customer.tags_added"]


async def test_a_429_waits_its_retry_after(
    client: AdminClient, shop: StandinApi, registry: CollectorRegistry, sleeps: list[float]
) -> None:
    await fault(shop, kind="throttle_429", retry_after=0.3)
    assert (await client.tags_add(1, ["vip"])).ok
    assert len(sleeps) == 1 and 0.3 <= sleeps[0] <= 0.33
    assert requests(registry, "http_429") == 1


async def test_a_timeout_is_retried(
    client: AdminClient, shop: StandinApi, registry: CollectorRegistry
) -> None:
    await fault(shop, kind="slow", delay_ms=1500)
    assert (await client.tags_add(1, ["vip"])).ok
    assert requests(registry, "transport") == 1


async def test_after_the_bound_the_client_gives_up_with_the_last_reason(
    client: AdminClient, shop: StandinApi, registry: CollectorRegistry, sleeps: list[float]
) -> None:
    await fault(shop, kind="status", status=502, count=50)
    with pytest.raises(ShopifyUnavailable) as raised:
        await client.tags_add(1, ["vip"])
    assert raised.value.reason == "http_502" and raised.value.attempts == 3
    assert raised.value.operation == "tags_add"
    log = (await shop.control("GET", f"/shops/{shop.domain}/requests"))["requests"]
    assert [e["outcome"] for e in log] == ["fault_502"] * 3
    # Jittered exponential backoff between the attempts: within [ceiling/2, ceiling].
    assert len(sleeps) == 2 and 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02
    assert requests(registry, "unavailable") == 1
    labels = {"kind": "add", "path": "single", "result": "failed"}
    assert registry.get_sample_value("segflow_shopify_tag_operations_total", labels) == 1
    assert (await shop.control("GET", f"/shops/{shop.domain}/customers/1"))["tags"] == []


async def test_a_refused_connection_is_unavailable_after_the_bound() -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    async with AdminClient(
        "gone.myshopify.com", "shpat_x", VERSION, nobody, policy=QUICK
    ) as client:
        with pytest.raises(ShopifyUnavailable) as raised:
            await client.tags_add(1, ["vip"])
    assert raised.value.reason == "ConnectError"
