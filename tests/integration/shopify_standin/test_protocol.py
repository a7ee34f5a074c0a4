"""The stand-in speaks Shopify's Admin GraphQL protocol over real HTTP: authentication, the
documents it runs, tag semantics and limits, consent, errors and their shapes."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.shopify_standin.server import RunningStandin
from tests.helpers import StandinApi, create_standin_shop

VERSION = "2026-04"
TAGS_ADD = """mutation Add($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node { id ... on Customer { tags } }
    userErrors { field message }
  }
}"""
TAGS_REMOVE = TAGS_ADD.replace("tagsAdd", "tagsRemove").replace("Add(", "Remove(")


@pytest.fixture
async def api(shopify_standin: RunningStandin, standin_domain: str) -> AsyncIterator[StandinApi]:
    async with httpx.AsyncClient() as http:
        shop = await create_standin_shop(
            shopify_standin.url,
            standin_domain,
            customers=[
                {"id": 1, "email": "ada@example.com", "tags": ["Red", "vip"]},
                {"id": 2, "email": None},
            ],
            http=http,
        )
        yield StandinApi(http, shopify_standin.url, shop["token"])


async def test_a_missing_or_wrong_token_gets_shopifys_401(api: StandinApi) -> None:
    for token in ("", "shpat_wrong"):
        response = await api.post("{ shop { name } }", token=token)
        assert response.status_code == 401
        assert response.json() == {
            "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
        }
    assert (await api.post("{ shop { name } }")).status_code == 200


async def test_tags_add_compares_case_insensitively_and_keeps_the_existing_spelling(
    api: StandinApi,
) -> None:
    variables = {"id": "gid://shopify/Customer/1", "tags": ["red", "blue, green"]}
    body = await api.gql(TAGS_ADD, variables)
    assert body["data"]["tagsAdd"] == {
        "node": {"id": "gid://shopify/Customer/1", "tags": ["blue", "green", "Red", "vip"]},
        "userErrors": [],
    }
    cost = body["extensions"]["cost"]
    assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (10, 10)
    assert cost["throttleStatus"]["maximumAvailable"] == 2000
    assert cost["throttleStatus"]["currentlyAvailable"] <= 1990

    removed = await api.gql(
        TAGS_REMOVE,
        {"id": "gid://shopify/Customer/1", "tags": ["RED", "nope"]},
    )
    assert removed["data"]["tagsRemove"]["node"]["tags"] == ["blue", "green", "vip"]


async def test_an_unknown_customer_is_a_user_error_unless_the_shop_auto_creates(
    api: StandinApi,
) -> None:
    variables = {"id": "gid://shopify/Customer/404", "tags": ["vip"]}
    body = await api.gql(TAGS_ADD, variables)
    assert body["data"]["tagsAdd"] == {
        "node": None,
        "userErrors": [{"field": ["id"], "message": "Customer does not exist"}],
    }
    other_domain = f"auto-{api.token}.myshopify.com".replace("_", "-")
    other = await create_standin_shop(
        api.base_url, other_domain, auto_create_customers=True, http=api.http
    )
    created = (await api.post(TAGS_ADD, variables, token=other["token"])).json()
    assert created["data"]["tagsAdd"]["node"]["tags"] == ["vip"]
    seen = await api.control("GET", f"/shops/{other_domain}/customers/404")
    assert seen["tags"] == ["vip"]


async def test_tag_limits_are_user_errors_and_long_input_arrays_are_refused(
    api: StandinApi,
) -> None:
    gid = "gid://shopify/Customer/1"
    long_tag = await api.gql(TAGS_ADD, {"id": gid, "tags": ["x" * 256]})
    assert long_tag["data"]["tagsAdd"]["userErrors"] == [
        {"field": ["tags"], "message": "Tags is too long (maximum is 255 characters)"}
    ]
    many = [f"t{n}" for n in range(249)]  # with Red and vip: 251
    too_many = await api.gql(TAGS_ADD, {"id": gid, "tags": many})
    assert too_many["data"]["tagsAdd"]["userErrors"] == [
        {"field": ["tags"], "message": "Tags cannot be more than 250"}
    ]
    array = [f"t{n}" for n in range(251)]
    refused = await api.gql(TAGS_ADD, {"id": gid, "tags": array})
    assert refused["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    unchanged = await api.gql('{ customer(id: "gid://shopify/Customer/1") { tags } }')
    assert unchanged["data"]["customer"]["tags"] == ["Red", "vip"]


async def test_aliases_fragments_and_variables_run_and_missing_nodes_are_null(
    api: StandinApi,
) -> None:
    query = """
    query Two($ids: [ID!]!, $one: ID!) {
      first: customer(id: $one) { ...Bits }
      many: nodes(ids: $ids) { id ... on Customer { ...Bits } }
    }
    fragment Bits on Customer { tags emailMarketingConsent { marketingState } }
    """
    variables = {
        "one": "gid://shopify/Customer/1",
        "ids": ["gid://shopify/Customer/1", "gid://shopify/Customer/9"],
    }
    body = await api.gql(query, variables)
    expected = {
        "tags": ["Red", "vip"],
        "emailMarketingConsent": {"marketingState": "NOT_SUBSCRIBED"},
    }
    assert body["data"]["first"] == expected
    assert body["data"]["many"] == [{"id": "gid://shopify/Customer/1", **expected}, None]
    cost = body["extensions"]["cost"]
    # customer 1 + consent 1; nodes: 2 ids x (1 + consent 1) asked, one of them missing.
    assert (cost["requestedQueryCost"], cost["actualQueryCost"]) == (6, 4)


async def test_malformed_requests_get_shopifys_error_shapes(api: StandinApi) -> None:
    syntax = await api.gql("{ shop { name } ")
    assert syntax["errors"][0]["extensions"]["code"] == "PARSE_ERROR"
    assert syntax["errors"][0]["message"].startswith("syntax error, ")
    unknown = await api.gql("{ shop { name planName } }")
    assert unknown["errors"][0]["message"] == "Field 'planName' doesn't exist on type 'Shop'"
    assert unknown["errors"][0]["extensions"]["code"] == "undefinedField"
    missing = await api.gql('mutation { tagsAdd(id: "x") { userErrors { message } } }')
    assert missing["errors"][0]["message"] == "Field 'tagsAdd' is missing required arguments: tags"
    bad_variable = await api.gql(TAGS_ADD, {"id": None, "tags": []})
    assert (
        bad_variable["errors"][0]["message"]
        == "Variable $id of type ID! was provided invalid value"
    )
    bad_id = await api.gql('{ customer(id: "42") { id } }')
    assert bad_id["data"] == {"customer": None}
    assert bad_id["errors"][0]["message"] == "Invalid global id '42'"
    no_query = await api.http.post(
        api.endpoint, json={}, headers={"X-Shopify-Access-Token": api.token}
    )
    assert no_query.status_code == 400
    assert no_query.json() == {"errors": {"query": "Required parameter missing or invalid"}}


async def test_a_query_over_the_single_query_limit_is_refused_with_its_cost(
    api: StandinApi,
) -> None:
    query = """{ webhookSubscriptions(first: 250) {
      nodes { ...Costly }
      edges { node { ...Costly } }
    } }
    fragment Costly on WebhookSubscription {
      apiVersion { handle }
      endpoint { ... on WebhookHttpEndpoint { callbackUrl } }
    }"""
    body = await api.gql(query)
    assert body["errors"][0]["extensions"] == {
        "code": "MAX_COST_EXCEEDED",
        "cost": 1502,
        "maxCost": 1000,
    }
    assert "data" not in body


async def test_email_consent_updates_and_refuses_as_shopify_does(api: StandinApi) -> None:
    query = """mutation C($input: CustomerEmailMarketingConsentUpdateInput!) {
      customerEmailMarketingConsentUpdate(input: $input) {
        customer { emailMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt } }
        userErrors { field message code }
      }
    }"""

    async def update(customer: int, consent: dict[str, Any]) -> Any:
        variables = {
            "input": {
                "customerId": f"gid://shopify/Customer/{customer}",
                "emailMarketingConsent": consent,
            }
        }
        body = await api.gql(query, variables)
        return body["data"]["customerEmailMarketingConsentUpdate"]

    done = await update(
        1,
        {
            "marketingState": "SUBSCRIBED",
            "marketingOptInLevel": "SINGLE_OPT_IN",
            "consentUpdatedAt": "2026-04-25T01:00:00Z",
        },
    )
    assert done == {
        "customer": {
            "emailMarketingConsent": {
                "marketingState": "SUBSCRIBED",
                "marketingOptInLevel": "SINGLE_OPT_IN",
                "consentUpdatedAt": "2026-04-25T01:00:00Z",
            }
        },
        "userErrors": [],
    }
    no_level = await update(1, {"marketingState": "SUBSCRIBED"})
    assert no_level["userErrors"] == [
        {
            "field": ["input", "emailMarketingConsent", "marketingOptInLevel"],
            "message": "Marketing opt in level must exist",
            "code": "MISSING_ARGUMENT",
        }
    ]
    unknown = await update(77, {"marketingState": "UNSUBSCRIBED"})
    assert unknown == {
        "customer": None,
        "userErrors": [
            {"field": ["input", "customerId"], "message": "Customer not found", "code": "INVALID"}
        ],
    }
    no_email = await update(2, {"marketingState": "UNSUBSCRIBED"})
    assert no_email["userErrors"][0]["field"] == ["input", "customerId"]


async def test_webhook_subscriptions_are_created_listed_and_refused_twice(api: StandinApi) -> None:
    create = """mutation W($topic: WebhookSubscriptionTopic!, $uri: String!) {
      webhookSubscriptionCreate(topic: $topic, webhookSubscription: {uri: $uri, format: JSON}) {
        webhookSubscription {
          id topic uri
          endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } }
        }
        userErrors { field message }
      }
    }"""
    uri = "https://segflow.example/webhooks/shopify"
    first = await api.gql(create, {"topic": "CUSTOMERS_UPDATE", "uri": uri})
    made = first["data"]["webhookSubscriptionCreate"]["webhookSubscription"]
    assert made["topic"] == "CUSTOMERS_UPDATE"
    assert made["endpoint"] == {"__typename": "WebhookHttpEndpoint", "callbackUrl": uri}
    again = await api.gql(create, {"topic": "CUSTOMERS_UPDATE", "uri": uri})
    assert again["data"]["webhookSubscriptionCreate"]["userErrors"] == [
        {
            "field": ["webhookSubscription", "callbackUrl"],
            "message": "Address for this topic has already been taken",
        }
    ]
    blank = await api.gql(create, {"topic": "CUSTOMER_TAGS_ADDED", "uri": " "})
    assert (
        blank["data"]["webhookSubscriptionCreate"]["userErrors"][0]["message"]
        == "Address can't be blank"
    )
    for topic in ("CUSTOMER_TAGS_ADDED", "CUSTOMER_TAGS_REMOVED"):
        await api.gql(create, {"topic": topic, "uri": uri})
    listing = """query L($after: String) { webhookSubscriptions(first: 2, after: $after) {
      nodes { topic } pageInfo { hasNextPage endCursor } } }"""
    page = (await api.gql(listing))["data"]["webhookSubscriptions"]
    assert [n["topic"] for n in page["nodes"]] == ["CUSTOMERS_UPDATE", "CUSTOMER_TAGS_ADDED"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await api.gql(listing, {"after": page["pageInfo"]["endCursor"]})
    assert [n["topic"] for n in rest["data"]["webhookSubscriptions"]["nodes"]] == [
        "CUSTOMER_TAGS_REMOVED"
    ]
