"""The stand-in's echo webhooks reach a real HTTP receiver signed and shaped as Shopify's, are
retried when the receiver fails, and are logged."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from services.common.shopify import Customer as CustomerPayload
from services.common.shopify import CustomerTagsChanged, EmailConsentUpdate, parse_payload
from services.shopify_standin.server import RunningStandin
from tests.helpers import StandinApi, WebhookReceiver, create_standin_shop

SUBSCRIBE = """mutation W($topic: WebhookSubscriptionTopic!, $uri: String!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {uri: $uri}) {
    webhookSubscription { id } userErrors { message }
  }
}"""
TAGS = """mutation T($id: ID!, $tags: [String!]!) {
  add: tagsAdd(id: $id, tags: $tags) { userErrors { message } }
}"""
HEADERS = (
    "x-shopify-topic",
    "x-shopify-hmac-sha256",
    "x-shopify-shop-domain",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-shopify-triggered-at",
    "x-shopify-api-version",
)
TOPICS = (
    "CUSTOMERS_UPDATE",
    "CUSTOMER_TAGS_ADDED",
    "CUSTOMER_TAGS_REMOVED",
    "CUSTOMERS_EMAIL_MARKETING_CONSENT_UPDATE",
)


@pytest.fixture
async def api(
    shopify_standin: RunningStandin, standin_domain: str, webhook_receiver: WebhookReceiver
) -> AsyncIterator[StandinApi]:
    async with httpx.AsyncClient() as http:
        shop = await create_standin_shop(
            shopify_standin.url,
            standin_domain,
            customers=[{"id": 7, "email": "grace@example.com", "tags": ["Loyal"]}],
            http=http,
        )
        api = StandinApi(http, shopify_standin.url, shop["token"])
        for topic in TOPICS:
            body = await api.gql(SUBSCRIBE, {"topic": topic, "uri": webhook_receiver.url})
            assert body["data"]["webhookSubscriptionCreate"]["userErrors"] == []
        yield api


async def test_a_tag_change_echoes_customers_update_and_tags_added_signed_with_every_header(
    api: StandinApi, webhook_receiver: WebhookReceiver, standin_domain: str
) -> None:
    await api.gql(TAGS, {"id": "gid://shopify/Customer/7", "tags": ["loyal", "VIP"]})
    [update] = await webhook_receiver.wait_for("customers/update", 1)
    [added] = await webhook_receiver.wait_for("customer.tags_added", 1)
    for delivery in (update, added):
        assert delivery.verified
        assert all(delivery.headers.get(name) for name in HEADERS)
        assert delivery.headers["x-shopify-shop-domain"] == standin_domain
        assert delivery.headers["x-shopify-api-version"] == "2026-04"
    assert update.headers["x-shopify-event-id"] == added.headers["x-shopify-event-id"]
    assert update.headers["x-shopify-webhook-id"] != added.headers["x-shopify-webhook-id"]
    customer = update.json()
    assert customer["tags"] == "Loyal, VIP"
    assert customer["admin_graphql_api_id"] == "gid://shopify/Customer/7"
    # Only the tag that was not there already, in the caller's spelling.
    assert added.json()["tags"] == ["VIP"]
    assert added.json()["customerId"] == "gid://shopify/Customer/7"
    # The bodies are what segflow's own ingest models read.
    parsed_update = parse_payload("customers/update", customer)
    assert isinstance(parsed_update, CustomerPayload) and parsed_update.tags == ["Loyal", "VIP"]
    parsed_added = parse_payload("customer.tags_added", added.json())
    assert isinstance(parsed_added, CustomerTagsChanged) and parsed_added.customer_id == 7
    assert parsed_added.occurred_at is not None


async def test_no_echo_when_nothing_changed_and_removal_echoes_tags_removed(
    api: StandinApi, webhook_receiver: WebhookReceiver
) -> None:
    await api.gql(TAGS, {"id": "gid://shopify/Customer/7", "tags": ["LOYAL"]})
    remove = TAGS.replace("tagsAdd", "tagsRemove")
    await api.gql(remove, {"id": "gid://shopify/Customer/7", "tags": ["loyal"]})
    [removed] = await webhook_receiver.wait_for("customer.tags_removed", 1)
    assert removed.verified and removed.json()["tags"] == ["Loyal"]
    [update] = await webhook_receiver.wait_for("customers/update", 1)
    assert update.json()["tags"] == ""
    # The no-op add before the removal echoed nothing.
    assert webhook_receiver.of_topic("customer.tags_added") == []
    assert len(webhook_receiver.of_topic("customers/update")) == 1


async def test_a_consent_change_echoes_its_topic(
    api: StandinApi, webhook_receiver: WebhookReceiver
) -> None:
    query = """mutation C($input: CustomerEmailMarketingConsentUpdateInput!) {
      customerEmailMarketingConsentUpdate(input: $input) { userErrors { message } }
    }"""
    consent = {"marketingState": "UNSUBSCRIBED"}
    await api.gql(
        query,
        {"input": {"customerId": "gid://shopify/Customer/7", "emailMarketingConsent": consent}},
    )
    [echo] = await webhook_receiver.wait_for("customers_email_marketing_consent/update", 1)
    assert echo.verified
    parsed = parse_payload("customers_email_marketing_consent/update", echo.json())
    assert isinstance(parsed, EmailConsentUpdate)
    assert parsed.customer_id == 7 and parsed.email_marketing_consent is not None
    assert parsed.email_marketing_consent.state == "unsubscribed"


async def test_a_failing_receiver_is_retried_and_the_log_shows_it(
    api: StandinApi, webhook_receiver: WebhookReceiver, standin_domain: str
) -> None:
    webhook_receiver.fail_next = 2  # the customers/update delivery fails twice, then lands
    await api.gql(TAGS, {"id": "gid://shopify/Customer/7", "tags": ["new"]})
    await webhook_receiver.wait_for("customers/update", 1)
    await webhook_receiver.wait_for("customer.tags_added", 1)
    assert webhook_receiver.refused == 2
    log = await api.control("GET", "/deliveries", params={"shop": standin_domain})
    by_topic = {entry["topic"]: entry for entry in log["deliveries"]}
    attempts = sorted(entry["attempts"] for entry in by_topic.values())
    assert all(entry["status"] == "delivered" for entry in by_topic.values())
    # Two refusals spread over the two deliveries: three extra attempts would mean a double.
    assert sum(attempts) == len(attempts) + 2


async def test_a_receiver_that_keeps_failing_ends_as_failed_in_the_log(
    api: StandinApi, webhook_receiver: WebhookReceiver, standin_domain: str
) -> None:
    webhook_receiver.fail_next = 1_000
    await api.gql(TAGS, {"id": "gid://shopify/Customer/7", "tags": ["doomed"]})
    params = {"shop": standin_domain, "topic": "customer.tags_added"}
    async with asyncio.timeout(10):
        while True:
            [entry] = (await api.control("GET", "/deliveries", params=params))["deliveries"]
            if entry["status"] != "pending":
                break
            await asyncio.sleep(0.02)
    assert entry["status"] == "failed"
    assert entry["attempts"] == 3 and entry["response_status"] == 500
