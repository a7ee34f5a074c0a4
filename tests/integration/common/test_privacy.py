"""Shopify's compliance webhooks against a real PostgreSQL: customers/redact erases the customer
from every table (a table holding customer data that erasure does not cover fails the coverage
test), events of an erased customer never bring it back, customers/data_request is exported to
the shop's admin token, shop/redact erases the shop."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from services.api.app import create_app
from services.common.envelope import EnvelopeMeta, encode_envelope
from services.common.privacy import CUSTOMER_TABLES
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.dev.mailbox import MailboxStore
from services.segmenter.domain.reducer import Event
from services.segmenter.runtime.pipeline import BatchOutcome, ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage.queries import dedupe_id
from services.segmenter.storage.segments import SegmentSpec, create_segment
from services.tagger import storage as tag_storage
from services.tagger.journeys_store import install_journeys
from services.tagger.tags import Entry
from tests.integration.tagger.journeys.test_journey_enrolment import (
    batch,
    change_value,
    worker,
)
from tests.unit.segmenter.events import shopify_event

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
# Long, distinctive ids: a search of every table for the erased one cannot hit by chance.
ERASED = 913357024681357911
KEPT = 913357024681357922
ERASED_EMAIL = "erase.me@example.com"
KEPT_EMAIL = "keep.me@example.com"
# Strings that are the erased customer's personal data: none may be left in any table.
# (Phone and address are not kept at all: rules read neither.)
ERASED_STRINGS = (ERASED_EMAIL, "Zebediah", "Quillfeather")

# Tables that hold no customer data, and why. A new table must go here or into
# services/common/privacy.py CUSTOMER_TABLES (erased and exported), or this test fails.
NO_CUSTOMER_DATA = {
    "schema_migrations": "migration bookkeeping",
    "shops": "the shop: its domain (erased by shop/redact)",
    "shop_credentials": "the shop's key hashes and webhook secret (erased with the shop)",
    "shop_connections": "the shop's sealed Admin API token (erased by shop/redact)",
    "segments": "the merchant's rules",
    "products": "the catalog (product type, vendor, title)",
    "product_fanout": "product ids waiting for the scheduler",
    "processed_events": "Shopify event ids (random, naming no customer) for dedupe",
    "processed_engagement_events": "event ids for dedupe, naming no customer",
    "journeys": "the merchant's journeys",
    "journey_versions": "the merchant's journey definitions",
    "journey_templates": "the merchant's email templates",
    "erased_ids": "salted digests of erased ids: what keeps them erased",
    "redacted_shops": "domains of erased shops, so their events are dropped",
    "privacy_log": "that a request was carried out, with no customer id",
}


def envelope(shop: str, topic: str, payload: dict[str, Any], event_id: str) -> bytes:
    meta = EnvelopeMeta(
        event_id=event_id,
        shop=shop,
        topic=topic,
        source="shopify",
        customer_id=str(payload.get("customer", {}).get("id", payload.get("id"))),
        occurred_at=NOW,
        received_at=NOW,
    )
    return encode_envelope(meta, orjson.dumps(payload))


def customer_payload(customer_id: int, email: str, first: str, last: str) -> dict[str, Any]:
    return {
        "id": customer_id,
        "email": email,
        "first_name": first,
        "last_name": last,
        "phone": f"+1555000{customer_id}",
        "default_address": {"address1": f"42 {last} Lane", "city": "Springfield"},
        "created_at": (NOW - timedelta(days=3)).isoformat(),
        "updated_at": (NOW - timedelta(days=1)).isoformat(),
    }


def order_payload(order_id: int, customer_id: int, total: str) -> dict[str, Any]:
    return {
        "id": order_id,
        "created_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
        "total_price": total,
        "customer": {"id": customer_id},
        "line_items": [{"id": 1, "product_id": 5, "quantity": 1, "price": total}],
    }


def redact_payload(customer_id: int, email: str, orders: list[int]) -> dict[str, Any]:
    return {
        "shop_id": 1,
        "customer": {"id": customer_id, "email": email},
        "orders_to_redact": orders,
    }


async def run(db: asyncpg.Connection, shop_id: int, *events: Event) -> BatchOutcome:
    async with db.transaction():
        return await apply_events(db, [ShopEvent(shop_id, e) for e in events], RuleBook(), NOW)


async def rows_of(db: asyncpg.Connection, shop_id: int, customer_id: int) -> dict[str, int]:
    counts = {}
    for table, where in CUSTOMER_TABLES.items():
        query = f"SELECT count(*) FROM {table} WHERE {where}"
        counts[table] = await db.fetchval(query, shop_id, customer_id)
    return counts


async def tables(db: asyncpg.Connection) -> set[str]:
    rows = await db.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    return {r["table_name"] for r in rows}


async def tables_containing(db: asyncpg.Connection, text: str) -> list[str]:
    """Tables with any row whose text (every column, jsonb included) contains `text`."""
    found = []
    for table in sorted(await tables(db)):
        query = f"SELECT count(*) FROM {table} t WHERE strpos(lower(t::text), lower($1)) > 0"
        if await db.fetchval(query, text):
            found.append(table)
    return found


async def seed_customer(
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    shop: ShopCredentials,
    customer_id: int,
    email: str,
    first: str,
    last: str,
    order_id: int,
) -> None:
    """Give the customer rows in every table of CUSTOMER_TABLES, through the real paths where
    there is one (events, the tagger's batch) and the stores' functions elsewhere."""
    await run(
        db,
        shop.shop_id,
        shopify_event(
            "customers/create",
            customer_payload(customer_id, email, first, last),
            event_id=f"c{order_id}",
        ),
        shopify_event(
            "orders/create",
            order_payload(order_id, customer_id, "1500.00"),
            event_id=f"o{order_id}",
        ),
        shopify_event(
            "customers/data_request",
            {
                "shop_id": 1,
                "customer": {"id": customer_id, "email": email},
                "orders_requested": [order_id],
                "data_request": {"id": order_id + 1},
            },
            event_id=f"dr{order_id}",
        ),
    )
    tagger = worker(settings, pool)
    change = change_value(shop.domain, customer_id, order_id, "new-customer", "entered")
    await tagger.process(batch(settings.topic_segment_changes, [change]))
    order = envelope(shop.domain, "orders/create", order_payload(order_id, customer_id, "9"), "x")
    await tagger.process(batch(settings.topic_events, [order]))
    async with db.transaction():
        await tag_storage.write_ledger(
            db, {(shop.shop_id, customer_id): {"vip": Entry("VIP", "added", NOW)}}
        )
        await tag_storage.save_bulk_operation(
            db,
            shop.shop_id,
            tag_storage.LateBulk(
                shop.shop_id, f"gid://bulk/{order_id}", "add", [(customer_id, ["VIP"])], NOW, NOW
            ),
        )
    enrolment = await db.fetchval(
        "SELECT id FROM journey_enrolments WHERE shop_id = $1 AND customer_id = $2",
        shop.shop_id,
        customer_id,
    )
    await db.execute(
        "INSERT INTO journey_sends (enrolment_id, step_index, message_id, state, decided_at)"
        " VALUES ($1, 0, $2, 'sent', $3)",
        enrolment,
        f"<{order_id}@segflow.test>",
        NOW,
    )
    await db.execute(
        "INSERT INTO journey_seen (journey_id, customer_id, seen_seq)"
        " SELECT journey_id, customer_id, 1 FROM journey_enrolments WHERE id = $1"
        " ON CONFLICT DO NOTHING",
        enrolment,
    )
    await db.execute(
        "INSERT INTO consent_overrides (shop_id, customer_id, unsubscribed_at, sync_due_at)"
        " VALUES ($1, $2, $3, $3)",
        shop.shop_id,
        customer_id,
        NOW,
    )


@pytest.fixture
async def seeded(
    db: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings, shop: ShopCredentials
) -> ShopCredentials:
    async with db.transaction():
        await install_journeys(db, shop.shop_id, NOW)
        await create_segment(
            db,
            shop.shop_id,
            SegmentSpec(
                "vip",
                "VIP",
                "",
                {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]},
                [],
            ),
            NOW,
        )
    await seed_customer(db, pool, settings, shop, ERASED, ERASED_EMAIL, "Zebediah", "Erasure", 901)
    await seed_customer(db, pool, settings, shop, KEPT, KEPT_EMAIL, "Kept", "Keeper", 902)
    # The erased customer's name is unusual on purpose: found by a search of every table.
    await run(
        db,
        shop.shop_id,
        shopify_event(
            "customers/update",
            customer_payload(ERASED, ERASED_EMAIL, "Zebediah", "Quillfeather")
            | {"updated_at": NOW.isoformat(), "phone": "+15550007001"},
            event_id="u1",
        ),
    )
    return shop


async def redact(
    db: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings, shop: ShopCredentials
) -> BatchOutcome:
    payload = redact_payload(ERASED, ERASED_EMAIL, [901])
    outcome = await run(
        db, shop.shop_id, shopify_event("customers/redact", payload, event_id="redact-1")
    )
    record = envelope(shop.domain, "customers/redact", payload, "redact-1")
    await worker(settings, pool).process(batch(settings.topic_events, [record]))
    return outcome


async def test_every_table_is_either_erased_or_holds_no_customer_data(
    db: asyncpg.Connection,
) -> None:
    present = await tables(db)
    unclassified = present - CUSTOMER_TABLES.keys() - NO_CUSTOMER_DATA.keys()
    assert not unclassified, (
        f"tables not covered by erasure nor declared free of it: {unclassified}"
    )
    assert CUSTOMER_TABLES.keys() <= present
    # A customer_id column is customer data: such a table cannot be declared free of it.
    with_customer_column = {
        r["table_name"]
        for r in await db.fetch(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name = 'customer_id'"
        )
    }
    assert not (with_customer_column & NO_CUSTOMER_DATA.keys())


async def test_customers_redact_erases_the_customer_from_every_table(
    db: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings, seeded: ShopCredentials
) -> None:
    before = await rows_of(db, seeded.shop_id, ERASED)
    # The seed reaches every table the erasure covers, or the test proves nothing of it.
    assert all(before.values()), {t: n for t, n in before.items() if not n}
    for text in ERASED_STRINGS:
        assert await tables_containing(db, text), text
    kept_before = await rows_of(db, seeded.shop_id, KEPT)

    outcome = await redact(db, pool, settings, seeded)

    assert outcome.redacted == [(seeded.shop_id, ERASED)]
    assert await rows_of(db, seeded.shop_id, ERASED) == dict.fromkeys(CUSTOMER_TABLES, 0)
    for text in ERASED_STRINGS:
        assert await tables_containing(db, text) == [], text
    # The other customer is untouched (its bulk line included).
    assert await rows_of(db, seeded.shop_id, KEPT) == kept_before
    log = await db.fetch("SELECT kind, shop_id, rows_erased FROM privacy_log ORDER BY id")
    assert [r["kind"] for r in log].count("customer_redacted") == 1
    assert all(str(ERASED) not in str(dict(r)) for r in log)
    # Remembered as digests only: the id itself is in no table.
    assert await db.fetchval("SELECT count(*) FROM erased_ids") >= 2
    assert await tables_containing(db, str(ERASED)) == []


async def test_events_of_an_erased_customer_never_bring_it_back(
    db: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings, seeded: ShopCredentials
) -> None:
    await redact(db, pool, settings, seeded)
    # Kafka still holds its earlier events (replayed with their ids, or new ones) and Shopify
    # may send more: an update, an order naming it, a guest order it was told to erase.
    replay = [
        shopify_event(
            "customers/update",
            customer_payload(ERASED, ERASED_EMAIL, "Zebediah", "Quillfeather"),
            event_id="u1",
        ),
        shopify_event(
            "customers/update",
            customer_payload(ERASED, ERASED_EMAIL, "Zebediah", "Quillfeather"),
            event_id="u2",
        ),
        shopify_event("orders/create", order_payload(903, ERASED, "50.00"), event_id="o903"),
        shopify_event(
            "orders/updated",
            order_payload(901, KEPT, "1500.00") | {"customer": None},
            event_id="o901-guest",
        ),
        shopify_event(
            "customers/data_request",
            {"shop_id": 1, "customer": {"id": ERASED}, "data_request": {"id": 5}},
            event_id="dr-late",
        ),
    ]
    outcome = await run(db, seeded.shop_id, *replay)
    assert len(outcome.erased) == len([e for e in replay if e.event_id != "u1"])
    tagger = worker(settings, pool)
    late_change = change_value(seeded.domain, ERASED, 99, "new-customer", "entered")
    await tagger.process(batch(settings.topic_segment_changes, [late_change]))
    late_order = envelope(seeded.domain, "orders/create", order_payload(904, ERASED, "9"), "z")
    await tagger.process(batch(settings.topic_events, [late_order]))

    assert await rows_of(db, seeded.shop_id, ERASED) == dict.fromkeys(CUSTOMER_TABLES, 0)
    for text in ERASED_STRINGS:
        assert await tables_containing(db, text) == [], text
    assert (
        await db.fetchval("SELECT count(*) FROM orders WHERE order_id = ANY($1)", [901, 903]) == 0
    )


async def test_a_redaction_in_the_same_batch_as_the_customers_events_leaves_nothing(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    events = [
        shopify_event(
            "customers/create",
            customer_payload(ERASED, ERASED_EMAIL, "Zebediah", "Quillfeather"),
            event_id="c",
        ),
        shopify_event("orders/create", order_payload(901, ERASED, "10.00"), event_id="o"),
        shopify_event(
            "customers/redact", redact_payload(ERASED, ERASED_EMAIL, [901]), event_id="r"
        ),
    ]
    outcome = await run(db, shop.shop_id, *events)
    assert outcome.redacted == [(shop.shop_id, ERASED)]
    assert await rows_of(db, shop.shop_id, ERASED) == dict.fromkeys(CUSTOMER_TABLES, 0)
    assert await tables_containing(db, ERASED_EMAIL) == []


async def test_the_local_mailbox_forgets_mail_to_an_erased_customer(
    settings: Settings, pool: asyncpg.Pool, shop: ShopCredentials, tmp_path: Path
) -> None:
    store = MailboxStore(tmp_path / "mail")
    for to in (ERASED_EMAIL, KEPT_EMAIL):
        message = f"To: {to}\r\nFrom: shop@example.com\r\nMessage-ID: <{to}>\r\n\r\nHi\r\n"
        store.save(message.encode(), NOW)
    tagger = worker(settings, pool)
    tagger._erase_mail = store.erase_recipient
    record = envelope(
        shop.domain, "customers/redact", redact_payload(ERASED, ERASED_EMAIL.upper(), []), "r"
    )
    await tagger.process(batch(settings.topic_events, [record]))
    assert [m.message_id for m in store.messages()] == [f"<{KEPT_EMAIL}>"]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, clock=lambda: NOW)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def test_a_data_request_is_exported_to_the_shops_admin_token_once_fetched(
    db: asyncpg.Connection,
    seeded: ShopCredentials,
    api: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = {"Authorization": f"Bearer {seeded.api_token}"}
    pending = (await api.get("/v1/privacy/data-requests", headers=auth)).json()
    assert sorted(r["customer_id"] for r in pending["data_requests"]) == [str(ERASED), str(KEPT)]

    caplog.set_level("INFO")
    response = await api.get(f"/v1/customers/{ERASED}/export", headers=auth)
    assert response.status_code == 200
    export = json.loads(response.content, parse_float=Decimal)
    assert export["customer_id"] == str(ERASED)
    assert set(export["data"]) == set(CUSTOMER_TABLES)
    data = export["data"]
    assert data["customers"][0]["email"] == ERASED_EMAIL
    assert {o["order_id"] for o in data["orders"]} == {901}
    assert data["journey_enrolments"] and data["tag_ledger"] and data["memberships"]
    # Money exactly as stored: a JSON number with its cents, never through float.
    assert str(data["customers"][0]["total_spent"]) == "1500.00"
    # The other customer's data is not in it.
    assert KEPT_EMAIL not in response.text
    # Logged and counted without the data.
    assert ERASED_EMAIL not in caplog.text and "Zebediah" not in caplog.text
    assert "customer data exported" in caplog.text
    metrics = (await api.get("/metrics")).text
    assert "segflow_api_data_exports_total 1.0" in metrics

    pending = (await api.get("/v1/privacy/data-requests", headers=auth)).json()
    assert [r["customer_id"] for r in pending["data_requests"]] == [str(KEPT)]
    everything = await api.get("/v1/privacy/data-requests?pending=false", headers=auth)
    assert len(everything.json()["data_requests"]) == 2


async def test_another_shops_token_exports_nothing_of_this_shops_customer(
    db: asyncpg.Connection, seeded: ShopCredentials, api: httpx.AsyncClient
) -> None:
    other = await create_shop(db, "other-shop.myshopify.com")
    auth = {"Authorization": f"Bearer {other.api_token}"}
    response = await api.get(f"/v1/customers/{ERASED}/export", headers=auth)
    assert response.status_code == 200
    assert all(rows == [] for rows in response.json()["data"].values())
    assert (await api.get("/v1/privacy/data-requests", headers=auth)).json() == {
        "data_requests": []
    }
    assert (await api.get(f"/v1/customers/{ERASED}/export")).status_code == 401


async def test_migrated_dedupe_ids_are_the_digests_new_events_are_checked_against(
    db: asyncpg.Connection,
) -> None:
    # Migration 0013 rewrites the stored ids in SQL; a replay after the upgrade is checked in
    # Python (dedupe_id): both must give the same digest, or the replay counts twice.
    for event_id in ("import:orders/create:1:2026", "5b6a7c8d-1e2f-4a3b", "ünïcode-id"):
        in_sql = await db.fetchval(
            "SELECT left(encode(sha256(convert_to($1::text, 'UTF8')), 'hex'), 32)", event_id
        )
        assert in_sql == dedupe_id(event_id)
