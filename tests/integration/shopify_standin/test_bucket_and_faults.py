"""The stand-in's leaky bucket (charge the requested cost, refund to the actual, THROTTLED in a
200 when short) and the faults a test can inject."""

from collections.abc import AsyncIterator

import httpx
import pytest

from services.shopify_standin.server import RunningStandin
from tests.helpers import StandinApi, create_standin_shop

TAGS_ADD = """mutation T($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { node { id } userErrors { message } }
}"""
ONE = {"id": "gid://shopify/Customer/1", "tags": ["vip"]}


@pytest.fixture
async def api(shopify_standin: RunningStandin, standin_domain: str) -> AsyncIterator[StandinApi]:
    async with httpx.AsyncClient() as http:
        # 25 points, restoring so slowly that the test's own duration does not refill a request.
        shop = await create_standin_shop(
            shopify_standin.url,
            standin_domain,
            bucket_size=25,
            restore_rate=0.5,
            customers=[{"id": 1, "email": "a@example.com"}],
            http=http,
        )
        yield StandinApi(http, shopify_standin.url, shop["token"], standin_domain)


async def test_a_request_the_bucket_cannot_pay_for_is_throttled_in_a_200_and_not_run(
    api: StandinApi,
) -> None:
    first = await api.gql(TAGS_ADD, {"id": "gid://shopify/Customer/1", "tags": ["a"]})
    second = await api.gql(TAGS_ADD, {"id": "gid://shopify/Customer/1", "tags": ["b"]})
    assert first["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 15
    assert second["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 5
    response = await api.post(TAGS_ADD, {"id": "gid://shopify/Customer/1", "tags": ["c"]})
    assert response.status_code == 200
    throttled = response.json()
    assert "data" not in throttled
    assert throttled["errors"] == [
        {
            "message": "Throttled",
            "extensions": {
                "code": "THROTTLED",
                "documentation": "https://shopify.dev/api/usage/rate-limits",
            },
        }
    ]
    cost = throttled["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 10 and cost["actualQueryCost"] is None
    assert cost["throttleStatus"] == {
        "maximumAvailable": 25,
        "currentlyAvailable": 5,
        "restoreRate": 0.5,
    }
    customer = await api.control("GET", f"/shops/{api.domain}/customers/1")
    assert customer["tags"] == ["a", "b"]
    log = (await api.control("GET", f"/shops/{api.domain}/requests"))["requests"]
    assert [e["outcome"] for e in log] == ["ok", "ok", "throttled"]
    assert log[2]["before"] < 10 <= log[1]["before"]
    assert all(e["before"] >= 0 and e["after"] >= 0 for e in log)


async def test_the_difference_between_requested_and_actual_cost_is_refunded(
    api: StandinApi,
) -> None:
    ids = [f"gid://shopify/Customer/{n}" for n in range(100, 105)]
    body = await api.gql("query N($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ids})
    assert body["data"]["nodes"] == [None] * 5
    assert body["extensions"]["cost"]["requestedQueryCost"] == 5
    assert body["extensions"]["cost"]["actualQueryCost"] == 0
    [entry] = (await api.control("GET", f"/shops/{api.domain}/requests"))["requests"]
    assert entry["after"] >= entry["before"] - 1e-6


async def test_injected_5xx_and_429_answer_before_running_and_then_stop(api: StandinApi) -> None:
    domain = api.domain
    await api.control("POST", f"/shops/{domain}/faults", json={"kind": "status", "count": 2})
    await api.control(
        "POST", f"/shops/{domain}/faults", json={"kind": "throttle_429", "retry_after": 2}
    )
    statuses = []
    for _ in range(4):
        response = await api.post(TAGS_ADD, ONE)
        statuses.append((response.status_code, response.headers.get("retry-after")))
    assert statuses == [(503, None), (503, None), (429, "2"), (200, None)]
    customer = await api.control("GET", f"/shops/{domain}/customers/1")
    assert customer["tags"] == ["vip"]


async def test_a_5xx_after_execute_loses_the_answer_but_not_the_write(api: StandinApi) -> None:
    domain = api.domain
    await api.control(
        "POST",
        f"/shops/{domain}/faults",
        json={"kind": "status", "status": 502, "after_execute": True},
    )
    response = await api.post(TAGS_ADD, ONE)
    assert response.status_code == 502
    assert (await api.control("GET", f"/shops/{domain}/customers/1"))["tags"] == ["vip"]


async def test_a_slow_fault_delays_the_answer_past_a_client_timeout(api: StandinApi) -> None:
    domain = api.domain
    await api.control("POST", f"/shops/{domain}/faults", json={"kind": "slow", "delay_ms": 600})
    with pytest.raises(httpx.ReadTimeout):
        await api.http.post(
            api.endpoint,
            json={"query": "{ shop { name } }"},
            headers={"X-Shopify-Access-Token": api.token},
            timeout=0.1,
        )
    assert (await api.post("{ shop { name } }")).status_code == 200


async def test_the_control_api_refuses_unknown_shops_and_bad_faults(api: StandinApi) -> None:
    missing = await api.http.post(
        f"{api.base_url}/_standin/shops/nobody.myshopify.com/faults", json={"kind": "status"}
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_shop"
    bad = await api.http.post(
        f"{api.base_url}/_standin/shops/{api.domain}/faults",
        json={"kind": "status", "status": 200},
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "status"
