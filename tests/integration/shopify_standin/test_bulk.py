"""The stand-in's staged upload and bulk mutation flow, step by step over raw HTTP, with the
refusals Shopify gives and the bulk_operations/finish webhook."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from services.shopify_standin.server import RunningStandin
from tests.helpers import StandinApi, WebhookReceiver, create_standin_shop

STAGE = """mutation S($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url resourceUrl parameters { name value } }
    userErrors { field message }
  }
}"""
RUN = """mutation R($mutation: String!, $path: String!) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $path) {
    bulkOperation { id status objectCount url }
    userErrors { field message code }
  }
}"""
POLL = """query P($id: ID!) {
  node(id: $id) { ... on BulkOperation { id status errorCode objectCount fileSize url } }
}"""
INNER = """mutation A($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } }
}"""


@pytest.fixture
async def api(shopify_standin: RunningStandin, standin_domain: str) -> AsyncIterator[StandinApi]:
    async with httpx.AsyncClient() as http:
        shop = await create_standin_shop(
            shopify_standin.url,
            standin_domain,
            bulk_mutation_limit=1,
            customers=[{"id": n, "email": f"c{n}@example.com"} for n in range(1, 6)],
            http=http,
        )
        yield StandinApi(http, shopify_standin.url, shop["token"], standin_domain)


async def stage_and_upload(api: StandinApi, body: bytes) -> str:
    """The staged upload path of `body`, uploaded as Shopify's targets expect."""
    variables = {
        "input": [
            {
                "resource": "BULK_MUTATION_VARIABLES",
                "filename": "tags.jsonl",
                "mimeType": "text/jsonl",
                "httpMethod": "POST",
            }
        ]
    }
    staged = (await api.gql(STAGE, variables))["data"]["stagedUploadsCreate"]
    assert staged["userErrors"] == []
    [target] = staged["stagedTargets"]
    parameters = {p["name"]: p["value"] for p in target["parameters"]}
    assert parameters["key"].endswith("/tags.jsonl")
    assert parameters["success_action_status"] == "201"
    upload = await api.http.post(
        target["url"], data=parameters, files={"file": ("tags.jsonl", body, "text/jsonl")}
    )
    assert upload.status_code == 201
    assert f"<Key>{parameters['key']}</Key>" in upload.text
    return str(parameters["key"])


async def finished(api: StandinApi, operation_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            node = (await api.gql(POLL, {"id": operation_id}))["data"]["node"]
            if node["status"] not in ("CREATED", "RUNNING"):
                return dict(node)
            await asyncio.sleep(0.05)


async def test_a_bulk_mutation_runs_each_line_and_reports_each_in_the_result_file(
    api: StandinApi, webhook_receiver: WebhookReceiver
) -> None:
    subscribe = """mutation W($uri: String!) {
      webhookSubscriptionCreate(topic: BULK_OPERATIONS_FINISH, webhookSubscription: {uri: $uri}) {
        userErrors { message }
      }
    }"""
    await api.gql(subscribe, {"uri": webhook_receiver.url})
    lines = [
        {"id": "gid://shopify/Customer/1", "tags": ["bulk"]},
        {"id": "gid://shopify/Customer/999", "tags": ["bulk"]},
        {"id": "gid://shopify/Customer/3", "tags": ["bulk", "more"]},
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\nnot json\n"
    path = await stage_and_upload(api, body)
    started = (await api.gql(RUN, {"mutation": INNER, "path": path}))["data"]
    operation = started["bulkOperationRunMutation"]["bulkOperation"]
    assert operation["status"] == "CREATED" and operation["url"] is None
    done = await finished(api, operation["id"])
    assert done["status"] == "COMPLETED" and done["objectCount"] == "4"
    result = await api.http.get(done["url"])
    rows = [orjson.loads(line) for line in result.content.splitlines()]
    assert int(done["fileSize"]) == len(result.content)
    assert [row["__lineNumber"] for row in rows] == [0, 1, 2, 3]
    assert rows[0]["data"]["tagsAdd"] == {
        "node": {"id": "gid://shopify/Customer/1"},
        "userErrors": [],
    }
    assert rows[1]["data"]["tagsAdd"]["userErrors"] == [
        {"field": ["id"], "message": "Customer does not exist"}
    ]
    assert "errors" in rows[3] and "data" not in rows[3]
    customer = await api.control("GET", f"/shops/{api.domain}/customers/3")
    assert customer["tags"] == ["bulk", "more"]
    [finish] = await webhook_receiver.wait_for("bulk_operations/finish", 1)
    assert finish.verified
    assert finish.json()["admin_graphql_api_id"] == operation["id"]
    assert finish.json()["status"] == "completed" and finish.json()["type"] == "mutation"
    # The bulk lines cost nothing: only the GraphQL requests are in the log.
    log = (await api.control("GET", f"/shops/{api.domain}/requests"))["requests"]
    assert {entry["operation"] for entry in log} >= {"bulkOperationRunMutation", "node"}
    assert "tagsAdd" not in {entry["operation"] for entry in log}


async def test_bulk_runs_are_refused_as_shopify_refuses_them(api: StandinApi) -> None:
    missing = (await api.gql(RUN, {"mutation": INNER, "path": "tmp/1/bulk/nothing.jsonl"}))["data"]
    assert missing["bulkOperationRunMutation"]["userErrors"][0]["code"] == "NO_SUCH_FILE"
    empty = await stage_and_upload(api, b"\n")
    refused = (await api.gql(RUN, {"mutation": INNER, "path": empty}))["data"]
    assert refused["bulkOperationRunMutation"]["userErrors"] == [
        {"field": None, "message": "The input file is empty.", "code": "INVALID_STAGED_UPLOAD_FILE"}
    ]
    path = await stage_and_upload(api, b'{"id": "gid://shopify/Customer/1", "tags": ["x"]}\n')
    broken = (await api.gql(RUN, {"mutation": "mutation {", "path": path}))["data"]
    [error] = broken["bulkOperationRunMutation"]["userErrors"]
    assert error["code"] == "INVALID_MUTATION"
    assert error["message"].startswith("Failed to parse the mutation - syntax error")


async def test_a_shop_runs_at_most_its_limit_of_bulk_mutations_at_once(api: StandinApi) -> None:
    # The first run waits a second in CREATED, so the second meets it in progress.
    await api.control(
        "POST", f"/shops/{api.domain}/faults", json={"kind": "bulk", "delay_ms": 1000}
    )
    path = await stage_and_upload(api, b'{"id": "gid://shopify/Customer/1", "tags": ["x"]}\n')
    first = (await api.gql(RUN, {"mutation": INNER, "path": path}))["data"]
    operation = first["bulkOperationRunMutation"]["bulkOperation"]
    second = (await api.gql(RUN, {"mutation": INNER, "path": path}))["data"]
    [error] = second["bulkOperationRunMutation"]["userErrors"]
    assert error["code"] == "OPERATION_IN_PROGRESS"
    assert operation["id"] in error["message"]
    assert (await finished(api, operation["id"]))["status"] == "COMPLETED"
    third = (await api.gql(RUN, {"mutation": INNER, "path": path}))["data"]
    assert third["bulkOperationRunMutation"]["userErrors"] == []
