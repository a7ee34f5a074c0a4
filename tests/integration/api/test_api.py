"""The segmenter REST API over real HTTP: segments CRUD, preview, members, isolation."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from services.api.app import create_app
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.state import CustomerState
from services.segmenter.storage.queries import save_customers
from tests.helpers import start_server

NOW = datetime(2026, 6, 1, tzinfo=UTC)
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[str]:
    server = make_server(create_app(settings, clock=lambda: NOW), "127.0.0.1", settings.api_port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{settings.api_port}"
    server.should_exit = True
    await task


async def store_customers(db: asyncpg.Connection, shop_id: int, spent: dict[int, str]) -> None:
    rows = []
    for customer_id, total in spent.items():
        state = CustomerState(shop_id, customer_id)
        facts = CustomerFacts(shop_id, customer_id, orders_count=1, total_spent=Decimal(total))
        rows.append((state, facts, NOW, None))
    await db.execute(
        "INSERT INTO customers (shop_id, customer_id) SELECT $1, unnest($2::bigint[])",
        shop_id,
        list(spent),
    )
    await save_customers(db, rows)


def client(url: str, shop: ShopCredentials) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {shop.api_token}"})


async def test_create_backfills_and_members_are_paginated(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    big = {9007199254740993 + n: "1500.00" for n in range(5)}  # ids above 2**53
    await store_customers(db, shop.shop_id, {**big, 1: "999.99", 2: "1000.00"})
    async with client(api, shop) as http:
        created = await http.post(
            "/v1/segments", json={"handle": "vip", "name": "VIP", "conditions": VIP}
        )
        assert created.status_code == 201, created.text
        segment = created.json()
        assert segment["backfill"] == {"entered": 5, "exited": 0}
        assert segment["size"] == 5
        assert segment["version"] == 1
        assert segment["conditions"] == VIP

        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get(f"/v1/segments/{segment['id']}/customers", params=params)).json()
            seen += [c["customer_id"] for c in page["customers"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [str(cid) for cid in sorted(big)]

        member = await http.get(f"/v1/customers/{min(big)}/segments")
        assert [s["handle"] for s in member.json()["segments"]] == ["vip"]
        state = (await http.get(f"/v1/customers/{min(big)}")).json()
        assert state["customer_id"] == str(min(big))
        assert state["total_spent"] == "1500.00"
    outbox = await db.fetch("SELECT change, cause FROM segment_changes")
    assert [tuple(r) for r in outbox] == [("entered", "backfill")] * 5


async def test_changing_the_rule_backfills_exits_and_entries(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    await store_customers(db, shop.shop_id, {1: "50.00", 2: "1500.00", 3: "700.00"})
    async with client(api, shop) as http:
        segment = (
            await http.post("/v1/segments", json={"handle": "vip", "name": "V", "conditions": VIP})
        ).json()
        lower = {"all": [{"name": "total_spent", "operator": "between", "value": [600, 800]}]}
        changed = await http.put(
            f"/v1/segments/{segment['id']}", json={"name": "Mid", "conditions": lower}
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["version"] == 2
        assert changed.json()["backfill"] == {"entered": 1, "exited": 1}
        deleted = await http.delete(f"/v1/segments/{segment['id']}")
        assert deleted.json() == {"deleted": True, "exited": 1}
        assert (await http.get(f"/v1/segments/{segment['id']}")).status_code == 404
    changes = await db.fetch("SELECT customer_id, change, cause FROM segment_changes ORDER BY seq")
    assert [tuple(r) for r in changes] == [
        (2, "entered", "backfill"),
        (3, "entered", "backfill"),
        (2, "exited", "backfill"),
        (3, "exited", "segment_deleted"),
    ]


async def test_preview_counts_without_saving(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    await store_customers(db, shop.shop_id, {1: "50.00", 2: "1500.00", 3: "2000.00"})
    async with client(api, shop) as http:
        response = await http.post("/v1/segments/preview", json={"conditions": VIP, "sample": 1})
    assert response.json() == {"count": 2, "sample": ["2"]}
    assert await db.fetchval("SELECT count(*) FROM segments") == 0


@pytest.mark.parametrize(
    ("conditions", "field"),
    [
        ({"all": [{"name": "nope", "operator": "equal_to", "value": 1}]}, "conditions.all[0].name"),
        (
            {"all": [VIP["all"][0], {"name": "total_spent", "operator": "contains", "value": 1}]},
            "conditions.all[1].operator",
        ),
        (
            {"any": [{"name": "total_spent", "operator": "greater_than", "value": "lots"}]},
            "conditions.any[0].value",
        ),
        ({"all": []}, "conditions.all"),
    ],
)
async def test_invalid_rules_are_422_naming_the_path(
    api: str, shop: ShopCredentials, conditions: dict[str, Any], field: str
) -> None:
    async with client(api, shop) as http:
        response = await http.post(
            "/v1/segments", json={"handle": "x", "name": "X", "conditions": conditions}
        )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_rule"
    assert response.json()["error"]["field"] == field


async def test_duplicate_handle_is_409(api: str, shop: ShopCredentials) -> None:
    body = {"handle": "vip", "name": "VIP", "conditions": VIP}
    async with client(api, shop) as http:
        assert (await http.post("/v1/segments", json=body)).status_code == 201
        again = await http.post("/v1/segments", json=body)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "handle_taken"
    assert "exists already" in again.json()["error"]["message"]


async def test_a_handle_still_being_deleted_is_409_saying_so(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    body = {"handle": "vip", "name": "VIP", "conditions": VIP}
    async with client(api, shop) as http:
        assert (await http.post("/v1/segments", json=body)).status_code == 201
        # As a delete leaves it while its members' exits are written.
        await db.execute("UPDATE segments SET deleting = true WHERE handle = 'vip'")
        again = await http.post("/v1/segments", json=body)
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "handle_taken"
    assert "being deleted" in again.json()["error"]["message"]
    assert again.headers["retry-after"] == "5"


async def test_another_shops_data_is_never_visible(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    other = await create_shop(db, "other.myshopify.com")
    await store_customers(db, shop.shop_id, {42: "1500.00"})
    async with client(api, shop) as http:
        segment = (
            await http.post("/v1/segments", json={"handle": "vip", "name": "V", "conditions": VIP})
        ).json()
    async with client(api, other) as http:
        for path in (
            "/v1/customers/42",
            "/v1/customers/42/segments",
            f"/v1/segments/{segment['id']}",
            f"/v1/segments/{segment['id']}/customers",
        ):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        for response in (
            await http.put(f"/v1/segments/{segment['id']}", json={"name": "x", "conditions": VIP}),
            await http.delete(f"/v1/segments/{segment['id']}"),
        ):
            assert response.status_code == 404
        assert (await http.get("/v1/segments")).json() == {"segments": []}
    async with httpx.AsyncClient(base_url=api) as anonymous:
        response = await anonymous.get("/v1/segments")
    assert response.status_code == 401


async def test_rule_schema_lists_variables_and_our_operators(
    api: str, shop: ShopCredentials
) -> None:
    async with client(api, shop) as http:
        schema = (await http.get("/v1/rules/schema")).json()
    names = {v["name"] for v in schema["variables"]}
    assert {"total_spent", "days_since_last_order", "product_type_order_counts"} <= names
    operators = {op["name"] for ops in schema["variable_type_operators"].values() for op in ops}
    assert {"between", "not_equal_to", "count_at_least", "is_unknown"} <= operators
    assert {a["name"] for a in schema["actions"]} == {"add_tag", "remove_tag", "enroll_journey"}


async def test_decimal_rule_values_stay_numbers_through_storage(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    await store_customers(db, shop.shop_id, {1: "49.99", 2: "49.999", 3: "50.00"})
    rule = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 49.99}]}
    async with client(api, shop) as http:
        created = await http.post(
            "/v1/segments",
            content=b'{"handle": "over", "name": "Over", "conditions": '
            b'{"all": [{"name": "total_spent", "operator": "greater_than", "value": 49.99}]}}',
        )
        assert created.status_code == 201, created.text
        fetched = await http.get(f"/v1/segments/{created.json()['id']}")
    assert b'"value":49.99' in fetched.content
    assert fetched.json()["conditions"] == rule
    assert fetched.json()["size"] == 2


async def test_openapi_documents_the_request_bodies(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        spec = (await http.get("/openapi.json")).json()
    create = spec["paths"]["/v1/segments"]["post"]["requestBody"]["content"]["application/json"]
    assert set(create["schema"]["required"]) == {"handle", "name", "conditions"}
    assert "/v1/segments/{segment_id}/customers" in spec["paths"]


async def test_a_cursor_beyond_any_id_is_a_400_not_a_crash(api: str, shop: ShopCredentials) -> None:
    async with client(api, shop) as http:
        segment = (
            await http.post("/v1/segments", json={"handle": "vip", "name": "V", "conditions": VIP})
        ).json()
        response = await http.get(
            f"/v1/segments/{segment['id']}/customers", params={"cursor": "9" * 19}
        )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "cursor"


# Digits other than ASCII 0-9 that str.isdigit() accepts; int() turns the decimal ones into
# ASCII numbers (so "١" would name customer 1) and fails on the others (a 500).
_DIGIT_SETS = {
    "superscript": "⁰¹²³⁴⁵⁶⁷⁸⁹",
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "extended-arabic-indic": "۰۱۲۳۴۵۶۷۸۹",
    "devanagari": "०१२३४५६७८९",
    "full-width": "０１２３４５６７８９",
    "mathematical-bold": "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗",
}


def lookalikes(ascii_id: str) -> list[str]:
    """`ascii_id` written in each other digit set, and with only its last digit swapped."""
    spelled = [ascii_id.translate(str.maketrans("0123456789", s)) for s in _DIGIT_SETS.values()]
    mixed = [ascii_id[:-1] + s[int(ascii_id[-1])] for s in _DIGIT_SETS.values()]
    return spelled + mixed


async def test_path_ids_in_other_digits_are_a_clean_404(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    await store_customers(db, shop.shop_id, {1: "1500.00", 3: "1500.00", 123: "1500.00"})
    async with client(api, shop) as http:
        created = await http.post(
            "/v1/segments", json={"handle": "vip", "name": "V", "conditions": VIP}
        )
        segment_id = created.json()["id"]
        requests = []
        for customer_id in ("1", "3", "123"):
            for fake in lookalikes(customer_id):
                requests += [
                    ("GET", f"/v1/customers/{fake}"),
                    ("GET", f"/v1/customers/{fake}/segments"),
                ]
        for fake in lookalikes(segment_id):
            requests += [
                ("GET", f"/v1/segments/{fake}"),
                ("GET", f"/v1/segments/{fake}/customers"),
                ("DELETE", f"/v1/segments/{fake}"),
            ]
        for method, path in requests:
            response = await http.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found", (method, path)
        for fake in lookalikes(segment_id):
            response = await http.put(
                f"/v1/segments/{fake}", json={"name": "changed", "conditions": VIP}
            )
            assert response.status_code == 404, (fake, response.text)
        for fake in lookalikes("1"):
            response = await http.get(
                f"/v1/segments/{segment_id}/customers", params={"cursor": fake}
            )
            assert response.status_code == 400, (fake, response.text)
            assert response.json()["error"]["field"] == "cursor"
        # The real ids still work, and nothing was changed or deleted through a lookalike.
        segment = (await http.get(f"/v1/segments/{segment_id}")).json()
        assert (segment["name"], segment["version"], segment["size"]) == ("V", 1, 3)
        assert (await http.get("/v1/customers/123")).status_code == 200


async def test_the_segments_lookup_answers_like_every_other_route(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    """The lookup is a plain ASGI endpoint (lookup.py): its statuses, error bodies, headers
    and OpenAPI entry are those of the FastAPI routes."""
    await store_customers(db, shop.shop_id, {7: "1500.00", 8: "10.00"})
    async with client(api, shop) as http:
        await http.post("/v1/segments", json={"handle": "vip", "name": "VIP", "conditions": VIP})
        member = await http.get("/v1/customers/7/segments")
        assert member.status_code == 200
        assert member.headers["content-type"] == "application/json"
        body = member.json()
        assert body["customer_id"] == "7"
        assert [(s["handle"], s["name"]) for s in body["segments"]] == [("vip", "VIP")]
        assert datetime.fromisoformat(body["segments"][0]["since"]) == NOW
        assert (await http.get("/v1/customers/8/segments")).json() == {
            "customer_id": "8",
            "segments": [],
        }
        wrong_method = await http.post("/v1/customers/7/segments", json={})
        assert wrong_method.status_code == 405
        assert wrong_method.headers["allow"] == "GET"
        assert wrong_method.json()["error"]["code"] == "method_not_allowed"
        spec = (await http.get("/openapi.json")).json()
    lookup = spec["paths"]["/v1/customers/{customer_id}/segments"]["get"]
    assert set(lookup["responses"]) == {"200", "401", "403", "404", "429"}
    async with httpx.AsyncClient(base_url=api) as anonymous:
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer wrong"}):
            refused = await anonymous.get("/v1/customers/7/segments", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["error"]["code"] == "unauthorized"
