"""Hostile review of the privacy work (issue 14), against a real PostgreSQL: the export and
the erasure of customers/redact. Expected to fail until the findings are fixed."""

import json
from pathlib import Path

import asyncpg
import httpx
import orjson

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.dev.mailbox import MailboxStore
from services.segmenter.importer.runner import import_files
from services.tagger import storage as tag_storage
from tests.integration.common.test_privacy import (
    ERASED,
    ERASED_EMAIL,
    KEPT,
    NOW,
    api,
    customer_payload,
    envelope,
    order_payload,
    redact_payload,
    run,
    seeded,
    tables_containing,
)
from tests.integration.tagger.journeys.test_journey_enrolment import batch, worker
from tests.unit.segmenter.events import shopify_event

__all__ = ["api", "seeded"]


async def test_review_privacy_export_names_no_other_customer_of_a_shared_bulk_operation(
    db: asyncpg.Connection, seeded: ShopCredentials, api: httpx.AsyncClient
) -> None:
    # One bulk tag operation carries many customers' lines (that is what makes it bulk).
    async with db.transaction():
        await tag_storage.save_bulk_operation(
            db,
            seeded.shop_id,
            tag_storage.LateBulk(
                seeded.shop_id,
                "gid://bulk/shared",
                "add",
                [(ERASED, ["VIP"]), (KEPT, ["Wholesale-secret"])],
                NOW,
                NOW,
            ),
        )
    auth = {"Authorization": f"Bearer {seeded.api_token}"}
    response = await api.get(f"/v1/customers/{ERASED}/export", headers=auth)
    assert response.status_code == 200
    # The export of one customer is handed to whoever asked for it: another customer's id
    # and tags are not its data.
    assert str(KEPT) not in response.text
    assert "Wholesale-secret" not in response.text
    assert json.loads(response.content)["data"]["tag_bulk_operations"]


async def test_review_privacy_an_imported_customer_leaves_its_id_in_no_table_after_erasure(
    db: asyncpg.Connection, shop: ShopCredentials, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    export = tmp_path / "customers.jsonl"
    lines = [
        customer_payload(ERASED, ERASED_EMAIL, "Zebediah", "Quillfeather"),
        order_payload(777000111222333, ERASED, "15.00"),
    ]
    export.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    report = await import_files(pool, shop.domain, [export], now=NOW)
    assert report.events_applied == 2

    await run(
        db,
        shop.shop_id,
        shopify_event(
            "customers/redact",
            redact_payload(ERASED, ERASED_EMAIL, [777000111222333]),
            event_id="redact-import",
        ),
    )
    # The importer's dedupe ids are "import:<topic>:<object id>:<version>": the customer's id
    # (and its orders') stay in processed_events, declared to name no customer.
    assert await tables_containing(db, str(ERASED)) == []
    assert await tables_containing(db, "777000111222333") == []


async def test_review_privacy_the_export_includes_the_orders_shopify_names_in_the_request(
    db: asyncpg.Connection, shop: ShopCredentials, api: httpx.AsyncClient
) -> None:
    guest_order = 777000111222444
    await run(
        db,
        shop.shop_id,
        shopify_event(
            "customers/create",
            customer_payload(ERASED, ERASED_EMAIL, "Zebediah", "Quillfeather"),
            event_id="c1",
        ),
        # The customer's guest checkout: the order names no customer.
        shopify_event(
            "orders/create",
            order_payload(guest_order, ERASED, "42.00") | {"customer": None},
            event_id="guest",
        ),
        shopify_event(
            "customers/data_request",
            {
                "shop_id": 1,
                "customer": {"id": ERASED, "email": ERASED_EMAIL},
                "orders_requested": [guest_order],
                "data_request": {"id": 9},
            },
            event_id="dr",
        ),
    )
    assert await db.fetchval(
        "SELECT count(*) FROM orders WHERE shop_id = $1 AND order_id = $2",
        shop.shop_id,
        guest_order,
    )
    auth = {"Authorization": f"Bearer {shop.api_token}"}
    response = await api.get(f"/v1/customers/{ERASED}/export", headers=auth)
    assert response.status_code == 200
    # Erasure deletes the orders Shopify names (orders_to_redact); the export leaves out the
    # ones it names (orders_requested), so the shop cannot answer for them.
    orders = json.loads(response.content)["data"]["orders"]
    assert [o["order_id"] for o in orders] == [guest_order]


async def test_review_privacy_the_mailbox_forgets_mail_sent_to_an_erased_customers_old_address(
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    seeded: ShopCredentials,
    tmp_path: Path,
) -> None:
    store = MailboxStore(tmp_path / "mail")
    # The journey email the seed recorded as sent to the customer (journey_sends), delivered
    # to the address it had then; it changed its email since.
    message = (
        "To: zebediah.old@example.com\r\nFrom: shop@example.com\r\n"
        "Message-ID: <901@segflow.test>\r\n\r\nHi Zebediah\r\n"
    )
    store.save(message.encode(), NOW)
    tagger = worker(settings, pool)
    tagger._erase_mail = store.erase_recipient
    payload = redact_payload(ERASED, ERASED_EMAIL, [901])
    await run(db, seeded.shop_id, shopify_event("customers/redact", payload, event_id="r1"))
    record = envelope(seeded.domain, "customers/redact", payload, "r1")
    await tagger.process(batch(settings.topic_events, [record]))
    assert [m.message_id for m in store.messages()] == []
