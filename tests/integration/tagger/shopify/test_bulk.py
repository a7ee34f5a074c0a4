"""The client's bulk path against the stand-in: a few thousand customers in one bulk mutation,
per-line failures read from the result file and retried singly."""

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.common.metrics import new_registry
from services.shopify_standin.server import RunningStandin
from services.tagger.shopify import AdminClient, ShopifyClientMetrics
from tests.helpers import StandinApi, create_standin_shop

VERSION = "2026-04"
CUSTOMERS = 3000
FAILING_LINES = [5, 777, 2999]
UNKNOWN = 999_999


@pytest.fixture
async def shop(shopify_standin: RunningStandin, standin_domain: str) -> AsyncIterator[StandinApi]:
    async with httpx.AsyncClient() as http:
        created = await create_standin_shop(shopify_standin.url, standin_domain, http=http)
        api = StandinApi(http, shopify_standin.url, created["token"], standin_domain)
        generate = {"first_id": 1, "count": CUSTOMERS, "tags": ["Existing"]}
        await api.control("POST", f"/shops/{standin_domain}/customers", json={"generate": generate})
        yield api


@pytest.fixture
def registry() -> CollectorRegistry:
    return new_registry()


@pytest.fixture
async def client(shop: StandinApi, registry: CollectorRegistry) -> AsyncIterator[AdminClient]:
    metrics = ShopifyClientMetrics.create(registry)
    async with AdminClient(
        shop.domain, shop.token, VERSION, shop.base_url, metrics=metrics
    ) as admin:
        yield admin


async def test_a_bulk_tag_change_reports_failed_lines_which_succeed_when_retried_singly(
    client: AdminClient, shop: StandinApi, registry: CollectorRegistry
) -> None:
    await shop.control(
        "POST", f"/shops/{shop.domain}/faults", json={"kind": "bulk", "lines": FAILING_LINES}
    )
    lines = [(n, ["Bulk-VIP", "existing"]) for n in range(1, CUSTOMERS + 1)]
    lines.insert(100, (UNKNOWN, ["Bulk-VIP"]))  # line 100: a customer Shopify does not have
    result = await client.run_bulk_tags("add", lines)
    assert result.status == "COMPLETED" and result.lines == CUSTOMERS + 1
    assert result.applied == CUSTOMERS - len(FAILING_LINES)
    failed = {f.line_number: f for f in result.failures}
    assert sorted(failed) == sorted([*FAILING_LINES, 100])
    assert not failed[100].retryable and failed[100].messages == ("Customer does not exist",)
    assert all(failed[n].retryable for n in FAILING_LINES)
    # The lines shift by one after the inserted one: line 777 is customer 777, not 778.
    assert failed[777].customer_id == 777 and failed[5].customer_id == 6

    tags = await client.customers_tags([6, 7, 777])
    assert tags[7] == ("Bulk-VIP", "Existing")
    assert tags[6] == ("Existing",) and tags[777] == ("Existing",)

    retried = await client.retry_failures_singly("add", result)
    assert [r.ok for r in retried] == [True, False, True, True]
    after = await client.customers_tags([f.customer_id for f in result.failures if f.retryable])
    assert set(after.values()) == {("Bulk-VIP", "Existing")}

    completed = {"status": "completed"}
    assert registry.get_sample_value("segflow_shopify_bulk_operations_total", completed) == 1
    labels = {"kind": "add", "path": "bulk", "result": "applied"}
    applied = registry.get_sample_value("segflow_shopify_tag_operations_total", labels)
    assert applied == CUSTOMERS - len(FAILING_LINES)


async def test_bulk_removal_and_an_empty_change(client: AdminClient, shop: StandinApi) -> None:
    lines = [(n, ["EXISTING"]) for n in range(1, 51)]
    result = await client.run_bulk_tags("remove", lines)
    assert result.applied == 50 and result.failures == ()
    assert (await client.customers_tags([1, 50])) == {1: (), 50: ()}
    nothing = await client.run_bulk_tags("add", [])
    assert nothing.lines == 0 and nothing.failures == ()
