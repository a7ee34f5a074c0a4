"""Two shops with the same customer id, through every path that writes or reads their data:
webhooks (ingest → Kafka → segmenter worker), backfill, the scheduler, import, the outbox and
every REST endpoint. Nothing of one shop ever shows in the other's states, memberships, changes,
messages or answers.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.api.app import create_app
from services.common.metrics import new_registry
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.common.signing import sign_webhook
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.state import CustomerState
from services.segmenter.importer.runner import import_files
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.service import run_segmenter
from services.segmenter.storage.queries import dedupe_id, save_customers
from tests.helpers import drain_topic, start_server

CUSTOMER = 820982911946154508  # the same id in both shops
ALPHA_ONLY = 42  # a customer alpha has and beta does not: a leak shows as this id in beta
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}
LAPSED = {"all": [{"name": "days_since_last_order", "operator": "greater_than", "value": 30}]}
BUYER = {"all": [{"name": "orders_count", "operator": "greater_than_or_equal_to", "value": 1}]}


@dataclass
class Clock:
    """The segmenter's and the API's time: now, moved forward by the test."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
async def shops(db: asyncpg.Connection) -> tuple[ShopCredentials, ShopCredentials]:
    return (
        await create_shop(db, "alpha.myshopify.com"),
        await create_shop(db, "beta.myshopify.com"),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(settings: Settings, clock: Clock) -> AsyncIterator[str]:
    """The REST API alone, over real HTTP."""
    server = make_server(create_app(settings, clock=clock), "127.0.0.1", settings.api_port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{settings.api_port}"
    server.should_exit = True
    await task


@pytest.fixture
async def segmenter(settings: Settings, clock: Clock) -> AsyncIterator[str]:
    """Worker, scheduler (rounds every 0.1 s) and REST API on `clock`; yields the API URL."""
    fast = settings.model_copy(update={"scheduler_interval_seconds": 0.1})
    registry = new_registry()
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        run_segmenter(fast, SegmenterMetrics.create(registry), stop, clock=clock, started=started)
    )
    server = make_server(
        create_app(fast, clock=clock, registry=registry), "127.0.0.1", fast.api_port
    )
    api_task = await start_server(server)
    async with asyncio.timeout(30):
        await started.wait()
    yield f"http://127.0.0.1:{fast.api_port}"
    stop.set()
    server.should_exit = True
    await api_task
    await task


def client(url: str, shop: ShopCredentials) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {shop.api_token}"})


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll `check` until it holds, failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


def webhook(shop: ShopCredentials, topic: str, payload: Any, event_id: str) -> dict[str, Any]:
    """A Shopify webhook delivery signed with the shop's own secret."""
    body = json.dumps(payload).encode()
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop.domain,
        "X-Shopify-Hmac-Sha256": sign_webhook(body, shop.webhook_secret),
        "X-Shopify-Event-Id": event_id,
        "X-Shopify-API-Version": "2025-07",
    }
    return {"content": body, "headers": headers}


def order(
    order_id: int, total: str, at: datetime, email: str, customer_id: int = CUSTOMER
) -> dict[str, Any]:
    return {
        "id": order_id,
        "created_at": at.isoformat(),
        "updated_at": at.isoformat(),
        "total_price": total,
        "customer": {"id": customer_id, "email": email},
        "line_items": [{"id": 1, "product_id": 632910392, "quantity": 1, "price": total}],
    }


async def post(ingest: str, delivery: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=ingest) as http:
        return await http.post("/webhooks/shopify", **delivery)


async def create_segment(api: str, shop: ShopCredentials, handle: str, rule: Any) -> str:
    async with client(api, shop) as http:
        created = await http.post(
            "/v1/segments", json={"handle": handle, "name": handle, "conditions": rule}
        )
    assert created.status_code == 201, created.text
    segment_id: str = created.json()["id"]
    return segment_id


async def customer(
    db: asyncpg.Connection, shop: ShopCredentials, customer_id: int = CUSTOMER
) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT * FROM customers WHERE shop_id = $1 AND customer_id = $2",
        shop.shop_id,
        customer_id,
    )


async def customer_ids(db: asyncpg.Connection, shop: ShopCredentials) -> set[int]:
    rows = await db.fetch("SELECT customer_id FROM customers WHERE shop_id = $1", shop.shop_id)
    return {row["customer_id"] for row in rows}


async def members(
    db: asyncpg.Connection, shop: ShopCredentials, customer_id: int = CUSTOMER
) -> set[str]:
    """The handles of the segments the shop's customer is in."""
    rows = await db.fetch(
        "SELECT s.handle FROM memberships m JOIN segments s ON s.id = m.segment_id "
        "WHERE m.shop_id = $1 AND m.customer_id = $2",
        shop.shop_id,
        customer_id,
    )
    return {row["handle"] for row in rows}


async def changes(db: asyncpg.Connection, shop: ShopCredentials) -> list[tuple[int, str, str, str]]:
    """(customer, segment handle, change, cause) of the shop's outbox, in order."""
    rows = await db.fetch(
        "SELECT customer_id, segment_handle, change, cause FROM segment_changes "
        "WHERE shop_id = $1 ORDER BY seq",
        shop.shop_id,
    )
    return [(r["customer_id"], r["segment_handle"], r["change"], r["cause"]) for r in rows]


async def assert_rows_stay_in_their_shop(db: asyncpg.Connection) -> None:
    """Every membership and change names a segment and a customer of its own shop."""
    for table in ("memberships", "segment_changes"):
        crossed = await db.fetchval(
            f"SELECT count(*) FROM {table} x JOIN segments s ON s.id = x.segment_id "
            "WHERE s.shop_id <> x.shop_id"
        )
        assert crossed == 0, table
        orphans = await db.fetchval(
            f"SELECT count(*) FROM {table} x LEFT JOIN customers c "
            "ON c.shop_id = x.shop_id AND c.customer_id = x.customer_id "
            "WHERE c.customer_id IS NULL"
        )
        assert orphans == 0, table


async def assert_messages_match_the_outbox(db: asyncpg.Connection, settings: Settings) -> int:
    """Once everything is published, each change on segflow.segment-changes carries its own
    shop, key, customer and segment, exactly as its outbox row; return how many there are."""

    async def all_published() -> bool:
        return not await db.fetchval(
            "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"
        )

    await eventually(all_published)
    rows = await db.fetch(
        "SELECT c.change_id, s.domain, c.customer_id, c.segment_id, c.change "
        "FROM segment_changes c JOIN shops s ON s.id = c.shop_id"
    )
    expected = {
        str(r["change_id"]): (
            f"{r['domain']}/{r['customer_id']}".encode(),
            r["domain"],
            str(r["customer_id"]),
            str(r["segment_id"]),
            r["change"],
        )
        for r in rows
    }
    records = await drain_topic(
        settings.kafka_bootstrap_servers or "", settings.topic_segment_changes
    )
    published = {}
    for record in records:
        message = json.loads(record.value)
        published[message["change_id"]] = (
            record.key,
            message["shop"],
            message["customer_id"],
            message["segment"]["id"],
            message["change"],
        )
    assert published == expected
    return len(expected)


async def test_webhooks_for_one_customer_id_in_two_shops_never_mix(
    ingest_url: str,
    segmenter: str,
    shops: tuple[ShopCredentials, ShopCredentials],
    db: asyncpg.Connection,
    settings: Settings,
) -> None:
    alpha, beta = shops
    vip = {shop.shop_id: await create_segment(segmenter, shop, "vip", VIP) for shop in shops}
    now = datetime.now(UTC)
    # The same order id and the same event ids in both shops: neither may dedupe the other.
    for shop, total, email in ((alpha, "1500.00", "a@example.com"), (beta, "20.00", "b@x.com")):
        created = {"id": CUSTOMER, "email": email, "created_at": now.isoformat()}
        delivery = webhook(shop, "customers/create", created, "e-1")
        assert (await post(ingest_url, delivery)).is_success
        placed = order(450789469, total, now, email)
        assert (await post(ingest_url, webhook(shop, "orders/create", placed, "e-2"))).is_success
    big = order(450789999, "5000.00", now, "only@example.com", customer_id=ALPHA_ONLY)
    assert (await post(ingest_url, webhook(alpha, "orders/create", big, "e-9"))).is_success

    async def all_applied() -> bool:
        rows = [await customer(db, alpha, ALPHA_ONLY)] + [await customer(db, s) for s in shops]
        return all(row is not None and row["orders_count"] == 1 for row in rows)

    await eventually(all_applied)
    in_alpha, in_beta = await customer(db, alpha), await customer(db, beta)
    assert in_alpha is not None and in_beta is not None
    assert (in_alpha["total_spent"], in_alpha["email"]) == (Decimal("1500.00"), "a@example.com")
    assert (in_beta["total_spent"], in_beta["email"]) == (Decimal("20.00"), "b@x.com")
    assert await customer_ids(db, beta) == {CUSTOMER}
    assert await members(db, alpha) == {"vip"}
    assert await members(db, beta) == set()
    assert sorted(await changes(db, alpha)) == [
        (ALPHA_ONLY, "vip", "entered", "event"),
        (CUSTOMER, "vip", "entered", "event"),
    ]
    assert await changes(db, beta) == []
    processed = await db.fetch("SELECT shop_id, event_id FROM processed_events")
    assert sorted((r["shop_id"], r["event_id"]) for r in processed) == sorted(
        [(shop.shop_id, dedupe_id(event_id)) for shop in shops for event_id in ("e-1", "e-2")]
        + [(alpha.shop_id, dedupe_id("e-9"))]
    )

    # A second order makes beta's customer a VIP of beta's own segment; alpha's stays as it was.
    placed = order(450789470, "2000.00", now, "b@x.com")
    assert (await post(ingest_url, webhook(beta, "orders/create", placed, "e-3"))).is_success

    async def beta_is_vip() -> bool:
        return await members(db, beta) == {"vip"}

    await eventually(beta_is_vip)
    assert await changes(db, beta) == [(CUSTOMER, "vip", "entered", "event")]
    assert len(await changes(db, alpha)) == 2
    after = await customer(db, alpha)
    assert after is not None and after["orders_count"] == 1

    # The same product id is apparel in alpha's catalog and shoes in beta's; arriving after
    # the orders, it reaches each shop's buyers through the scheduler, each from its own shop.
    for shop, kind in ((alpha, "Apparel"), (beta, "Shoes")):
        product = {
            "id": 632910392,
            "title": "Thing",
            "product_type": kind,
            "vendor": "Acme",
            "updated_at": now.isoformat(),
        }
        assert (await post(ingest_url, webhook(shop, "products/create", product, "p-1"))).is_success

    async def catalogs_applied() -> bool:
        counts = [
            await db.fetchval(
                "SELECT product_type_counts FROM customers WHERE shop_id = $1 AND customer_id = $2",
                shop.shop_id,
                customer_id,
            )
            for shop, customer_id in ((alpha, CUSTOMER), (alpha, ALPHA_ONLY), (beta, CUSTOMER))
        ]
        return [json.loads(c) for c in counts] == [{"Apparel": 1}, {"Apparel": 1}, {"Shoes": 2}]

    await eventually(catalogs_applied)
    await assert_rows_stay_in_their_shop(db)
    assert await assert_messages_match_the_outbox(db, settings) == 3
    segment_of = await db.fetch("SELECT DISTINCT shop_id, segment_id FROM segment_changes")
    assert {r["shop_id"]: str(r["segment_id"]) for r in segment_of} == vip

    # Each token sees its own shop's customer under the shared id, and not the other's.
    for shop, spent in ((alpha, "1500.00"), (beta, "2020.00")):
        async with client(segmenter, shop) as http:
            state = (await http.get(f"/v1/customers/{CUSTOMER}")).json()
            segments = (await http.get(f"/v1/customers/{CUSTOMER}/segments")).json()
            alpha_only = await http.get(f"/v1/customers/{ALPHA_ONLY}")
            listed = (await http.get(f"/v1/segments/{vip[shop.shop_id]}/customers")).json()
        assert state["total_spent"] == spent
        assert [s["id"] for s in segments["segments"]] == [vip[shop.shop_id]]
        assert alpha_only.status_code == (200 if shop is alpha else 404)
        expected = [ALPHA_ONLY, CUSTOMER] if shop is alpha else [CUSTOMER]
        assert [c["customer_id"] for c in listed["customers"]] == [str(c) for c in expected]


async def test_a_webhook_signed_with_another_shops_secret_is_refused(
    ingest_url: str,
    shops: tuple[ShopCredentials, ShopCredentials],
    settings: Settings,
) -> None:
    alpha, beta = shops
    payload = {"id": CUSTOMER, "email": "a@example.com"}
    for named, signer in ((beta, alpha), (alpha, beta)):
        forged = webhook(named, "customers/update", payload, f"forged-{named.shop_id}")
        forged["headers"]["X-Shopify-Hmac-Sha256"] = sign_webhook(
            forged["content"], signer.webhook_secret
        )
        response = await post(ingest_url, forged)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
    honest = await post(ingest_url, webhook(beta, "customers/update", payload, "honest"))
    assert honest.status_code == 200, honest.text
    records = await drain_topic(settings.kafka_bootstrap_servers or "", settings.topic_events)
    assert [json.loads(r.value)["event_id"] for r in records] == ["honest"]


async def test_backfill_and_the_scheduler_stay_in_their_shop(
    ingest_url: str,
    segmenter: str,
    shops: tuple[ShopCredentials, ShopCredentials],
    db: asyncpg.Connection,
    settings: Settings,
    clock: Clock,
) -> None:
    alpha, beta = shops
    now = datetime.now(UTC)
    # The last orders: alpha's customer 10 days ago, beta's 25 days ago, alpha's other 40.
    for shop, customer_id, days in (
        (alpha, CUSTOMER, 10),
        (beta, CUSTOMER, 25),
        (alpha, ALPHA_ONLY, 40),
    ):
        placed = order(7000 + days, "50.00", now - timedelta(days=days), "c@x.com", customer_id)
        delivery = webhook(shop, "orders/create", placed, f"o-{customer_id}")
        assert (await post(ingest_url, delivery)).is_success

    async def all_applied() -> bool:
        rows = [await customer(db, alpha, ALPHA_ONLY)] + [await customer(db, s) for s in shops]
        return all(row is not None and row["orders_count"] == 1 for row in rows)

    await eventually(all_applied)

    # Backfill: a segment only beta has takes in beta's customer only.
    await create_segment(segmenter, beta, "buyer", BUYER)
    assert await members(db, beta) == {"buyer"}
    assert await members(db, alpha) == set()
    assert await members(db, alpha, ALPHA_ONLY) == set()
    lapsed = {s.shop_id: await create_segment(segmenter, s, "lapsed", LAPSED) for s in shops}
    assert await changes(db, beta) == [(CUSTOMER, "buyer", "entered", "backfill")]
    assert await changes(db, alpha) == [(ALPHA_ONLY, "lapsed", "entered", "backfill")]

    # A week on, beta's customer is 32 days past the order and lapses; alpha's is 17 days past.
    clock.offset = timedelta(days=7)

    async def beta_lapsed() -> bool:
        return "lapsed" in await members(db, beta)

    await eventually(beta_lapsed)
    assert await members(db, alpha) == set()
    assert await changes(db, beta) == [
        (CUSTOMER, "buyer", "entered", "backfill"),
        (CUSTOMER, "lapsed", "entered", "schedule"),
    ]
    assert await changes(db, alpha) == [(ALPHA_ONLY, "lapsed", "entered", "backfill")]

    # Two more weeks: alpha's customer lapses too, into alpha's own segment.
    clock.offset = timedelta(days=22)

    async def alpha_lapsed() -> bool:
        return "lapsed" in await members(db, alpha)

    await eventually(alpha_lapsed)
    assert await changes(db, alpha) == [
        (ALPHA_ONLY, "lapsed", "entered", "backfill"),
        (CUSTOMER, "lapsed", "entered", "schedule"),
    ]
    assert await members(db, beta) == {"buyer", "lapsed"}
    assert await customer_ids(db, beta) == {CUSTOMER}
    in_lapsed = await db.fetch(
        "SELECT shop_id, segment_id, customer_id FROM memberships "
        "WHERE segment_id = ANY($1::bigint[])",
        [int(segment_id) for segment_id in lapsed.values()],
    )
    assert sorted(
        (r["shop_id"], str(r["segment_id"]), r["customer_id"]) for r in in_lapsed
    ) == sorted(
        [
            (alpha.shop_id, lapsed[alpha.shop_id], ALPHA_ONLY),
            (alpha.shop_id, lapsed[alpha.shop_id], CUSTOMER),
            (beta.shop_id, lapsed[beta.shop_id], CUSTOMER),
        ]
    )
    await assert_rows_stay_in_their_shop(db)
    assert await assert_messages_match_the_outbox(db, settings) == 4


def jsonl(path: Path, *objects: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in objects))
    return path


async def test_an_import_into_one_shop_leaves_the_other_alone(
    segmenter: str,
    shops: tuple[ShopCredentials, ShopCredentials],
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    tmp_path: Path,
) -> None:
    alpha, beta = shops
    for shop in shops:
        await create_segment(segmenter, shop, "vip", VIP)
    at = datetime(2026, 5, 1, tzinfo=UTC)
    registered = {
        "id": CUSTOMER,
        "admin_graphql_api_id": f"gid://shopify/Customer/{CUSTOMER}",
        "email": "c@example.com",
        "created_at": at.isoformat(),
        "updated_at": at.isoformat(),
    }
    first = jsonl(tmp_path / "first.jsonl", registered, order(1, "1500.00", at, "c@example.com"))
    # The same file into both shops: the deterministic import event ids are per shop too.
    for shop in shops:
        report = await import_files(pool, shop.domain, [first])
        assert (report.events_applied, report.duplicates, report.rejected_count) == (2, 0, 0)
    # Then one file into each shop only.
    only_beta = jsonl(tmp_path / "beta.jsonl", order(2, "700.00", at, "c@example.com"))
    only_alpha = jsonl(
        tmp_path / "alpha.jsonl", order(3, "9000.00", at, "o@example.com", ALPHA_ONLY)
    )
    assert (await import_files(pool, beta.domain, [only_beta])).events_applied == 1
    assert (await import_files(pool, alpha.domain, [only_alpha])).events_applied == 1

    in_alpha, in_beta = await customer(db, alpha), await customer(db, beta)
    assert in_alpha is not None and in_beta is not None
    assert (in_alpha["orders_count"], in_alpha["total_spent"]) == (1, Decimal("1500.00"))
    assert (in_beta["orders_count"], in_beta["total_spent"]) == (2, Decimal("2200.00"))
    assert await customer_ids(db, alpha) == {CUSTOMER, ALPHA_ONLY}
    assert await customer_ids(db, beta) == {CUSTOMER}
    orders = await db.fetch("SELECT shop_id, order_id FROM orders ORDER BY shop_id, order_id")
    assert [(r["shop_id"], r["order_id"]) for r in orders] == [
        (alpha.shop_id, 1),
        (alpha.shop_id, 3),
        (beta.shop_id, 1),
        (beta.shop_id, 2),
    ]
    assert await changes(db, beta) == [(CUSTOMER, "vip", "entered", "import")]
    assert sorted(await changes(db, alpha)) == [
        (ALPHA_ONLY, "vip", "entered", "import"),
        (CUSTOMER, "vip", "entered", "import"),
    ]
    await assert_rows_stay_in_their_shop(db)
    # The segmenter's scheduler publishes what the import wrote, each change under its shop.
    assert await assert_messages_match_the_outbox(db, settings) == 3


async def store_customer(
    db: asyncpg.Connection, shop_id: int, customer_id: int, spent: str
) -> None:
    state = CustomerState(shop_id, customer_id)
    facts = CustomerFacts(shop_id, customer_id, orders_count=1, total_spent=Decimal(spent))
    await db.execute(
        "INSERT INTO customers (shop_id, customer_id) VALUES ($1, $2)", shop_id, customer_id
    )
    await save_customers(db, [(state, facts, datetime.now(UTC), None)])


async def test_every_endpoint_answers_with_its_own_shops_data_only(
    api: str, shops: tuple[ShopCredentials, ShopCredentials], db: asyncpg.Connection
) -> None:
    alpha, beta = shops
    only_alpha = ALPHA_ONLY
    await store_customer(db, alpha.shop_id, CUSTOMER, "1500.00")
    await store_customer(db, alpha.shop_id, only_alpha, "3000.00")
    await store_customer(db, beta.shop_id, CUSTOMER, "20.00")
    alpha_vip = await create_segment(api, alpha, "vip", VIP)

    async with client(api, beta) as http:
        # The shared id is beta's own customer; the other exists for alpha only.
        state = await http.get(f"/v1/customers/{CUSTOMER}")
        assert state.json()["total_spent"] == "20.00"
        assert (await http.get(f"/v1/customers/{CUSTOMER}/segments")).json()["segments"] == []
        for path in (f"/v1/customers/{only_alpha}", f"/v1/customers/{only_alpha}/segments"):
            assert (await http.get(path)).status_code == 404, path
        # Alpha's segment does not exist for beta, whatever the method.
        for method, path, body in (
            ("GET", f"/v1/segments/{alpha_vip}", None),
            ("GET", f"/v1/segments/{alpha_vip}/customers", None),
            ("PUT", f"/v1/segments/{alpha_vip}", {"name": "mine", "conditions": BUYER}),
            ("DELETE", f"/v1/segments/{alpha_vip}", None),
        ):
            response = await http.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
        assert (await http.get("/v1/segments")).json() == {"segments": []}
        preview = await http.post("/v1/segments/preview", json={"conditions": VIP})
        assert preview.json() == {"count": 0, "sample": []}
        everyone = await http.post("/v1/segments/preview", json={"conditions": BUYER})
        assert everyone.json() == {"count": 1, "sample": [str(CUSTOMER)]}
        # The same handle is free in beta, and its backfill sees beta's customers only.
        created = await http.post(
            "/v1/segments", json={"handle": "vip", "name": "VIP", "conditions": BUYER}
        )
        assert created.status_code == 201, created.text
        assert created.json()["backfill"] == {"entered": 1, "exited": 0}
        beta_vip = created.json()["id"]
        listed = (await http.get("/v1/segments")).json()["segments"]
        assert [(s["id"], s["size"]) for s in listed] == [(beta_vip, 1)]
        page = (await http.get(f"/v1/segments/{beta_vip}/customers")).json()
        assert [c["customer_id"] for c in page["customers"]] == [str(CUSTOMER)]

    async with client(api, alpha) as http:
        # Nothing beta did reached alpha's segment or its members.
        segment = (await http.get(f"/v1/segments/{alpha_vip}")).json()
        assert (segment["name"], segment["version"], segment["size"]) == ("vip", 1, 2)
        page = (await http.get(f"/v1/segments/{alpha_vip}/customers")).json()
        assert [c["customer_id"] for c in page["customers"]] == [str(only_alpha), str(CUSTOMER)]
        assert (await http.get(f"/v1/segments/{beta_vip}")).status_code == 404
        state = (await http.get(f"/v1/customers/{CUSTOMER}")).json()
        assert state["total_spent"] == "1500.00"
    await assert_rows_stay_in_their_shop(db)
