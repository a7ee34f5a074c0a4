"""AdminClient against the stand-in over real HTTP: tags, reads, consent, webhook
subscriptions, access checks, metrics, and what it refuses to retry."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.common.metrics import new_registry
from services.shopify_standin.server import RunningStandin
from services.tagger.shopify import (
    AdminClient,
    ShopifyAuthError,
    ShopifyClientMetrics,
    ShopifyGraphQLError,
    UserError,
)
from tests.helpers import StandinApi, create_standin_shop

VERSION = "2026-04"


@pytest.fixture
def registry() -> CollectorRegistry:
    return new_registry()


@pytest.fixture
async def shop(shopify_standin: RunningStandin, standin_domain: str) -> AsyncIterator[StandinApi]:
    async with httpx.AsyncClient() as http:
        created = await create_standin_shop(
            shopify_standin.url,
            standin_domain,
            customers=[
                {"id": 1, "email": "ada@example.com", "tags": ["Red"]},
                {"id": 2, "email": "bob@example.com"},
            ],
            http=http,
        )
        yield StandinApi(http, shopify_standin.url, created["token"], standin_domain)


@pytest.fixture
async def client(shop: StandinApi, registry: CollectorRegistry) -> AsyncIterator[AdminClient]:
    metrics = ShopifyClientMetrics.create(registry)
    async with AdminClient(
        shop.domain, shop.token, VERSION, base_url=shop.base_url, metrics=metrics
    ) as admin:
        yield admin


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_tags_are_added_and_removed_case_insensitively(
    client: AdminClient, shop: StandinApi, registry: CollectorRegistry
) -> None:
    added = await client.tags_add(1, ["red", "VIP"])
    assert added.ok and added.tags == ("Red", "VIP")
    removed = await client.tags_remove(1, ["vip"])
    assert removed.ok and removed.tags == ("Red",)
    assert (await shop.control("GET", f"/shops/{shop.domain}/customers/1"))["tags"] == ["Red"]
    labels = {"kind": "add", "path": "single", "result": "applied"}
    assert sample(registry, "segflow_shopify_tag_operations_total", **labels) == 1
    assert (
        sample(registry, "segflow_shopify_requests_total", operation="tags_add", result="ok") == 1
    )
    assert sample(registry, "segflow_shopify_bucket_maximum", shop=shop.domain) == 2000


async def test_user_errors_come_back_in_the_result_not_as_exceptions(
    client: AdminClient, registry: CollectorRegistry
) -> None:
    result = await client.tags_add(404, ["vip"])
    assert not result.ok and result.tags is None
    assert result.user_errors == (UserError(("id",), "Customer does not exist"),)
    labels = {"kind": "add", "path": "single", "result": "user_errors"}
    assert sample(registry, "segflow_shopify_tag_operations_total", **labels) == 1


async def test_customers_tags_reads_250_ids_a_call(client: AdminClient, shop: StandinApi) -> None:
    ids = [1, 2, *range(1000, 1258)]  # 260 ids: two calls
    tags = await client.customers_tags(ids)
    assert tags[1] == ("Red",) and tags[2] == () and tags[1000] is None
    assert len(tags) == 260
    log = (await shop.control("GET", f"/shops/{shop.domain}/requests"))["requests"]
    assert [e["requested"] for e in log if e["operation"] == "nodes"] == [250, 10]


async def test_email_consent_is_set_and_refusals_are_returned(client: AdminClient) -> None:
    moment = datetime(2026, 4, 25, 1, 0, tzinfo=UTC)
    done = await client.set_email_consent(1, "SUBSCRIBED", "SINGLE_OPT_IN", moment)
    assert done.ok and done.marketing_state == "SUBSCRIBED"
    refused = await client.set_email_consent(2, "SUBSCRIBED")
    assert refused.user_errors[0].message == "Marketing opt in level must exist"
    assert refused.user_errors[0].code == "MISSING_ARGUMENT"
    with pytest.raises(ValueError, match="timezone-aware"):
        await client.set_email_consent(1, "SUBSCRIBED", "SINGLE_OPT_IN", datetime(2026, 1, 1))


async def test_ensure_webhook_subscriptions_is_idempotent(client: AdminClient) -> None:
    url = "https://segflow.example/webhooks/shopify"
    topics = ["CUSTOMERS_UPDATE", "CUSTOMER_TAGS_ADDED", "CUSTOMER_TAGS_REMOVED"]
    first = await client.ensure_webhook_subscriptions(url, topics)
    assert [s.topic for s in first.created] == topics and first.kept == ()
    again = await client.ensure_webhook_subscriptions(url, [*topics, "BULK_OPERATIONS_FINISH"])
    assert [s.topic for s in again.kept] == topics
    assert [s.topic for s in again.created] == ["BULK_OPERATIONS_FINISH"]
    listed = await client.webhook_subscriptions()
    assert sorted(s.topic for s in listed) == sorted([*topics, "BULK_OPERATIONS_FINISH"])
    assert {s.uri for s in listed} == {url}
    refused = await client.ensure_webhook_subscriptions("ftp://nowhere", ["CUSTOMERS_UPDATE"])
    assert refused.failed == (
        (
            "CUSTOMERS_UPDATE",
            (UserError(("webhookSubscription", "callbackUrl"), "Address is invalid"),),
        ),
    )


async def test_check_access_names_missing_scopes(
    client: AdminClient, shopify_standin: RunningStandin, standin_domain: str
) -> None:
    check = await client.check_access()
    assert check.ok and check.domain == standin_domain
    assert check.iana_timezone == "UTC"  # the stand-in's default shop setting
    reader = await create_standin_shop(
        shopify_standin.url, f"ro-{standin_domain}", scopes=["read_customers"]
    )
    async with AdminClient(reader["domain"], reader["token"], VERSION, shopify_standin.url) as ro:
        limited = await ro.check_access()
    assert limited.missing_scopes == ("write_customers",)


async def test_a_wrong_token_raises_at_once_and_is_never_shown(
    shop: StandinApi, registry: CollectorRegistry
) -> None:
    metrics = ShopifyClientMetrics.create(registry)
    secret = "shpat_not_the_right_one"
    async with AdminClient(shop.domain, secret, VERSION, shop.base_url, metrics=metrics) as bad:
        assert secret not in repr(bad)
        with pytest.raises(ShopifyAuthError) as raised:
            await bad.tags_add(1, ["vip"])
    assert raised.value.status == 401 and secret not in str(raised.value)
    assert (
        sample(registry, "segflow_shopify_requests_total", operation="tags_add", result="auth") == 1
    )
    assert (
        sample(registry, "segflow_shopify_requests_total", operation="tags_add", result="ok") == 0
    )


async def test_a_bad_document_raises_graphql_errors_without_retrying(
    client: AdminClient, shop: StandinApi
) -> None:
    with pytest.raises(ShopifyGraphQLError) as raised:
        await client.execute("other", "{ shop { planName } }", {}, 1)
    assert raised.value.errors[0]["extensions"]["code"] == "undefinedField"
    log = (await shop.control("GET", f"/shops/{shop.domain}/requests"))["requests"]
    assert [e["outcome"] for e in log] == ["invalid"]


async def test_errors_beside_partial_data_are_raised_not_read_as_success(
    client: AdminClient, shop: StandinApi
) -> None:
    with pytest.raises(ShopifyGraphQLError) as raised:
        await client.tags_add(1, [f"t{n}" for n in range(251)])
    assert raised.value.errors[0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert (await shop.control("GET", f"/shops/{shop.domain}/customers/1"))["tags"] == ["Red"]
