"""Pacing against the stand-in's leaky bucket: the client waits for the bucket instead of being
throttled, retries a THROTTLED answer after the wait Shopify's figures imply, and paces each
shop on its own."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.common.metrics import new_registry
from services.shopify_standin.server import RunningStandin
from services.tagger.shopify import AdminClient, ShopifyClientMetrics
from tests.helpers import StandinApi, create_standin_shop

VERSION = "2026-04"


async def small_shop(
    standin: RunningStandin, http: httpx.AsyncClient, domain: str, size: float, rate: float
) -> StandinApi:
    customers = [{"id": n, "email": f"c{n}@example.com"} for n in range(1, 31)]
    shop = await create_standin_shop(
        standin.url, domain, bucket_size=size, restore_rate=rate, customers=customers, http=http
    )
    return StandinApi(http, standin.url, shop["token"], domain)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def assert_paced(log: list[dict[str, Any]]) -> None:
    """What pacing guarantees, read from the stand-in's own log."""
    outcomes = [entry["outcome"] for entry in log]
    assert all(e["before"] >= 0 and e["after"] >= 0 for e in log), "the bucket went negative"
    assert not any(a == b == "throttled" for a, b in zip(outcomes, outcomes[1:], strict=False)), (
        f"throttled twice in a row: {outcomes}"
    )


async def test_concurrent_tag_writes_wait_for_the_bucket_instead_of_being_throttled(
    shopify_standin: RunningStandin, http: httpx.AsyncClient, standin_domain: str
) -> None:
    # 30 points restoring 100 a second: three writes at once, then one every 0.1 s.
    shop = await small_shop(shopify_standin, http, standin_domain, 30, 100)
    registry = new_registry()
    metrics = ShopifyClientMetrics.create(registry)
    async with AdminClient(
        shop.domain, shop.token, VERSION, shop.base_url, metrics=metrics
    ) as client:
        results = await asyncio.gather(*(client.tags_add(n, ["paced"]) for n in range(1, 13)))
    assert all(r.ok for r in results)
    log = (await shop.control("GET", f"/shops/{shop.domain}/requests"))["requests"]
    assert_paced(log)
    assert [e["outcome"] for e in log] == ["ok"] * 12, "the pacer let a request be throttled"
    waited = registry.get_sample_value(
        "segflow_shopify_throttle_wait_seconds_total", {"shop": shop.domain}
    )
    assert waited is not None and waited > 0


async def test_a_throttled_answer_is_retried_after_the_wait_shopify_implies(
    shopify_standin: RunningStandin, http: httpx.AsyncClient, standin_domain: str
) -> None:
    # Another app of the same shop (raw requests here) drains the bucket behind the
    # client's back, so the client's model is wrong once and the stand-in throttles it.
    shop = await small_shop(shopify_standin, http, standin_domain, 30, 20)
    registry = new_registry()
    sleeps: list[float] = []

    async def recording_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(seconds)

    metrics = ShopifyClientMetrics.create(registry)
    async with AdminClient(
        shop.domain, shop.token, VERSION, shop.base_url, metrics=metrics, sleep=recording_sleep
    ) as client:
        assert (await client.tags_add(1, ["first"])).ok  # the model now says 20 available
        drain = """mutation {
          tagsAdd(id: "gid://shopify/Customer/2", tags: ["x"]) { userErrors { message } }
        }"""
        await shop.gql(drain)
        await shop.gql(drain)
        result = await client.tags_add(3, ["after-throttle"])
    assert result.ok
    log = (await shop.control("GET", f"/shops/{shop.domain}/requests"))["requests"]
    assert [e["outcome"] for e in log] == ["ok", "ok", "ok", "throttled", "ok"]
    assert_paced(log)
    throttled = log[3]
    # (requested - currentlyAvailable) / restoreRate, plus at most 10 % and 10 ms of jitter.
    expected = (10 - int(throttled["before"])) / 20
    assert expected <= sleeps[0] <= expected * 1.1 + 0.011
    labels = {"operation": "tags_add", "result": "throttled"}
    assert registry.get_sample_value("segflow_shopify_requests_total", labels) == 1


async def test_one_shop_waiting_for_its_bucket_does_not_delay_another(
    shopify_standin: RunningStandin, http: httpx.AsyncClient, standin_domain: str
) -> None:
    # Shop A restores 1 point a second: its second write has to wait ten seconds.
    slow = await small_shop(shopify_standin, http, f"slow-{standin_domain}", 10, 1)
    fast = await small_shop(shopify_standin, http, f"fast-{standin_domain}", 1000, 1000)
    async with (
        AdminClient(slow.domain, slow.token, VERSION, slow.base_url) as a,
        AdminClient(fast.domain, fast.token, VERSION, fast.base_url) as b,
    ):
        assert (await a.tags_add(1, ["a"])).ok
        waiting = [asyncio.create_task(a.tags_add(n, ["a"])) for n in (2, 3)]
        try:
            done = await asyncio.gather(*(b.tags_add(n, ["b"]) for n in range(1, 11)))
            assert all(r.ok for r in done)
            assert not any(task.done() for task in waiting), "shop B waited for shop A"
            assert a.pacer.model.level(a.pacer.clock()) < 10
        finally:
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
    slow_log = (await slow.control("GET", f"/shops/{slow.domain}/requests"))["requests"]
    assert [e["outcome"] for e in slow_log] == ["ok"], "shop A sent while its bucket was empty"
