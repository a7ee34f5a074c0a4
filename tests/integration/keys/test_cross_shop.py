"""Every shop endpoint scoped to its key's shop: shop B's keys never see or change shop A's
customers, segments, members, preview counts, journeys, enrolments or tags. Both shops hold
a customer with the same id, so "nothing found" is not the only way to pass. Each test also
checks that it covered every shop route of its app's table."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
from prometheus_client import CollectorRegistry

from services.api.app import create_app as create_api
from services.common.envelope import decode_envelope
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.tagger.app import create_app as create_tagger
from services.tagger.journeys_store import install_journeys
from services.tagger.service import TaggerHealth
from tests.integration.api.test_api import store_customers
from tests.integration.keys.support import keyed, served
from tests.integration.keys.test_route_powers import API_TABLE, TAGGER_TABLE

NOW = datetime(2026, 6, 1, tzinfo=UTC)
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}


def shop_routes(table: dict[tuple[str, str], Any]) -> set[tuple[str, str]]:
    return {route for route, access in table.items() if access.scheme == "bearer"}


def as_shop(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"})


async def test_the_api_shows_and_changes_only_the_keys_shop(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    a = shop
    b = await create_shop(db, "shop-b.myshopify.com")
    await store_customers(db, a.shop_id, {1: "1500.00", 2: "50.00"})
    await store_customers(db, b.shop_id, {1: "10.00", 3: "2000.00"})
    covered: set[tuple[str, str]] = set()
    app = create_api(keyed(settings), clock=lambda: NOW)
    async with served(app) as url, as_shop(url, a.api_token) as ha, as_shop(url, b.api_token) as hb:
        created_a = await ha.post(
            "/v1/segments", json={"handle": "vip", "name": "A VIP", "conditions": VIP}
        )
        assert created_a.status_code == 201, created_a.text
        seg_a = created_a.json()
        assert seg_a["backfill"] == {"entered": 1, "exited": 0}

        # Create: the same handle is B's own, and its backfill counts B's customers only.
        covered.add(("POST", "/v1/segments"))
        created_b = await hb.post(
            "/v1/segments", json={"handle": "vip", "name": "B VIP", "conditions": VIP}
        )
        assert created_b.status_code == 201, created_b.text
        seg_b = created_b.json()
        assert seg_b["backfill"] == {"entered": 1, "exited": 0} and seg_b["size"] == 1

        covered.add(("POST", "/v1/segments/preview"))
        preview_b = (await hb.post("/v1/segments/preview", json={"conditions": VIP})).json()
        preview_a = (await ha.post("/v1/segments/preview", json={"conditions": VIP})).json()
        assert preview_b == {"count": 1, "sample": ["3"]}
        assert preview_a == {"count": 1, "sample": ["1"]}
        everyone = {"all": [{"name": "total_spent", "operator": "greater_than", "value": -1}]}
        all_b = (await hb.post("/v1/segments/preview", json={"conditions": everyone})).json()
        assert all_b == {"count": 2, "sample": ["1", "3"]}

        covered.add(("GET", "/v1/segments"))
        listed_b = (await hb.get("/v1/segments")).json()["segments"]
        assert [(s["id"], s["name"]) for s in listed_b] == [(seg_b["id"], "B VIP")]

        for method, path in (
            ("GET", "/v1/segments/{segment_id}"),
            ("PUT", "/v1/segments/{segment_id}"),
            ("DELETE", "/v1/segments/{segment_id}"),
            ("GET", "/v1/segments/{segment_id}/customers"),
        ):
            covered.add((method, path))
            body = {"name": "taken over", "conditions": everyone} if method == "PUT" else None
            answer = await hb.request(method, path.replace("{segment_id}", seg_a["id"]), json=body)
            assert answer.status_code == 404, (method, path, answer.text)
        members_b = (await hb.get(f"/v1/segments/{seg_b['id']}/customers")).json()
        assert [c["customer_id"] for c in members_b["customers"]] == ["3"]
        # A's segment is as A made it: B's PUT and DELETE changed nothing.
        still = (await ha.get(f"/v1/segments/{seg_a['id']}")).json()
        assert (still["name"], still["version"], still["size"]) == ("A VIP", 1, 1)
        members_a = (await ha.get(f"/v1/segments/{seg_a['id']}/customers")).json()
        assert [c["customer_id"] for c in members_a["customers"]] == ["1"]

        # Customer 1 exists in both shops: each key sees its own shop's.
        covered.add(("GET", "/v1/customers/{customer_id}"))
        assert (await hb.get("/v1/customers/1")).json()["total_spent"] == "10.00"
        assert (await ha.get("/v1/customers/1")).json()["total_spent"] == "1500.00"
        assert (await hb.get("/v1/customers/2")).status_code == 404

        covered.add(("GET", "/v1/customers/{customer_id}/segments"))
        for key in (b.api_token, b.read_key):
            async with as_shop(url, key) as reader:
                assert (await reader.get("/v1/customers/1/segments")).json()["segments"] == []
                assert (await reader.get("/v1/customers/2/segments")).status_code == 404
        async with as_shop(url, a.read_key) as reader_a:
            lookup_a = (await reader_a.get("/v1/customers/1/segments")).json()
        assert [s["id"] for s in lookup_a["segments"]] == [seg_a["id"]]

        # A data export gives the key's shop's rows only; so does the list of requests.
        covered.add(("GET", "/v1/customers/{customer_id}/export"))
        export_b = await hb.get("/v1/customers/1/export")
        assert export_b.status_code == 200, export_b.text
        assert export_b.json()["shop"] == b.domain
        [row_b] = json.loads(export_b.content, parse_float=Decimal)["data"]["customers"]
        assert row_b["total_spent"] == Decimal("10.00") and "1500.00" not in export_b.text
        export_none = (await hb.get("/v1/customers/2/export")).json()["data"]
        assert all(rows == [] for rows in export_none.values())
        await db.execute(
            "INSERT INTO data_requests (shop_id, customer_id, requested_at) VALUES ($1, 2, $2)",
            a.shop_id,
            NOW,
        )
        covered.add(("GET", "/v1/privacy/data-requests"))
        assert len((await ha.get("/v1/privacy/data-requests")).json()["data_requests"]) == 1
        assert (await hb.get("/v1/privacy/data-requests")).json() == {"data_requests": []}

        covered.add(("GET", "/v1/rules/schema"))  # the same for every shop: no shop data
        assert (await hb.get("/v1/rules/schema")).json() == (
            await ha.get("/v1/rules/schema")
        ).json()
    assert covered == shop_routes(API_TABLE)


async def test_the_tagger_shows_and_changes_only_the_keys_shop(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    a = shop
    b = await create_shop(db, "shop-b.myshopify.com")
    await install_journeys(db, a.shop_id, NOW)
    for shop_id in (a.shop_id, b.shop_id):
        await db.execute("INSERT INTO customers (shop_id, customer_id) VALUES ($1, 77)", shop_id)
    await db.execute(
        "INSERT INTO tag_ledger (shop_id, customer_id, tag_key, tag, state, changed_at)"
        " VALUES ($1, 77, 'vip', 'VIP', 'added', $2)",
        a.shop_id,
        NOW,
    )
    await db.execute(
        "INSERT INTO tag_work (shop_id, customer_id, parked_at, last_error)"
        " VALUES ($1, 77, $2, 'Shopify unavailable')",
        a.shop_id,
        NOW,
    )
    welcome = await db.fetchrow(
        "SELECT id, current_version FROM journeys WHERE shop_id = $1 AND handle = 'welcome'",
        a.shop_id,
    )
    await db.execute(
        "INSERT INTO journey_enrolments (shop_id, journey_id, journey_version, customer_id,"
        " grp, state, entered_at, entry_seq) VALUES ($1, $2, $3, 77, 'treated', 'active', $4, 1)",
        a.shop_id,
        welcome["id"],
        welcome["current_version"],
        NOW,
    )
    covered: set[tuple[str, str]] = set()
    app = create_tagger(keyed(settings), TaggerHealth(), CollectorRegistry())
    async with served(app) as url, as_shop(url, a.api_token) as ha, as_shop(url, b.api_token) as hb:
        covered.add(("GET", "/v1/journeys"))
        journeys_a = (await ha.get("/v1/journeys")).json()["journeys"]
        assert {j["handle"] for j in journeys_a} == {"welcome", "vip-care", "win-back"}
        assert (await hb.get("/v1/journeys")).json() == {"journeys": []}

        covered.add(("POST", "/v1/journeys"))
        mine = next(j for j in journeys_a if j["handle"] == "welcome")
        definition = {
            k: v for k, v in mine.items() if k not in ("id", "version", "created_at", "updated_at")
        }
        created_b = await hb.post("/v1/journeys", json=definition)  # A's handle is no clash
        assert created_b.status_code == 201, created_b.text
        assert created_b.json()["id"] != mine["id"]

        path = "/v1/journeys/" + mine["id"]
        for method, route in (
            ("GET", "/v1/journeys/{journey_id}"),
            ("PUT", "/v1/journeys/{journey_id}"),
            ("DELETE", "/v1/journeys/{journey_id}"),
            ("GET", "/v1/journeys/{journey_id}/stats"),
        ):
            covered.add((method, route))
            target = path + ("/stats" if route.endswith("/stats") else "")
            body = {**definition, "name": "taken over"} if method == "PUT" else None
            answer = await hb.request(method, target, json=body)
            assert answer.status_code == 404, (method, route, answer.text)
        kept = (await ha.get(path)).json()
        assert (kept["name"], kept["version"]) == (mine["name"], mine["version"])

        covered.add(("GET", "/v1/customers/{customer_id}/enrolments"))
        assert len((await ha.get("/v1/customers/77/enrolments")).json()["enrolments"]) == 1
        assert (await hb.get("/v1/customers/77/enrolments")).json()["enrolments"] == []

        covered.add(("GET", "/v1/customers/{customer_id}/tags"))
        assert [t["tag"] for t in (await ha.get("/v1/customers/77/tags")).json()["tags"]] == ["VIP"]
        assert (await hb.get("/v1/customers/77/tags")).json()["tags"] == []

        covered.add(("GET", "/v1/tags/parked"))
        assert len((await ha.get("/v1/tags/parked")).json()["parked"]) == 1
        assert (await hb.get("/v1/tags/parked")).json() == {"parked": []}
        covered.add(("GET", "/v1/tags/pending"))
        assert (await hb.get("/v1/tags/pending")).json() == {"pending": []}
    assert covered == shop_routes(TAGGER_TABLE)


async def test_events_land_in_the_keys_shop_whatever_the_body_says(
    ingest_url: str,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    settings: Settings,
    read_topic: Any,
) -> None:
    """Ingest takes the shop from the key alone: B's events key cannot write into A."""
    b = await create_shop(db, "shop-b.myshopify.com")
    event = {
        "event_id": "iso-1",
        "type": "product_viewed",
        "customer_id": "1",
        "shop": shop.domain,
    }
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        one = await http.post(
            "/v1/events", json=event, headers={"Authorization": f"Bearer {b.events_key}"}
        )
        batch = await http.post(
            "/v1/events/batch",
            json={"events": [{**event, "event_id": "iso-2"}]},
            headers={"Authorization": f"Bearer {b.events_key}"},
        )
        flow = await http.post(
            "/webhooks/flow",
            json={"event_id": "iso-3", "event": "x", "customer_id": "1"},
            headers={"X-Segflow-Flow-Secret": b.flow_secret},
        )
    # An unknown field is refused outright rather than trusted for the shop.
    assert one.status_code == 400 and batch.status_code == 400, (one.text, batch.text)
    assert flow.status_code == 200, flow.text
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        del event["shop"]
        accepted = await http.post(
            "/v1/events", json=event, headers={"Authorization": f"Bearer {b.events_key}"}
        )
    assert accepted.status_code == 202, accepted.text
    records = await read_topic(settings.topic_events, 2)
    assert {decode_envelope(r.value).shop for r in records} == {b.domain}
