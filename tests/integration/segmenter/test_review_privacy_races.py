"""Hostile review of the privacy work (issue 14): a writer outside the customer's partition
(the importer) races the erasure of customers/redact. Real PostgreSQL, the interleaving
forced with a held transaction. Expected to fail until the finding is fixed."""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import orjson

from services.common.shops import ShopCredentials
from services.segmenter.importer.runner import import_files
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
from tests.integration.common.test_privacy import (
    ERASED,
    ERASED_EMAIL,
    NOW,
    customer_payload,
    redact_payload,
    run,
    tables_containing,
)
from tests.unit.segmenter.events import shopify_event


async def someone_waits_on_a_lock(db: asyncpg.Connection, besides: int) -> bool:
    waiting = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database() AND pid <> $1",
        besides,
    )
    return bool(waiting)


async def test_review_privacy_an_import_racing_the_erasure_does_not_bring_the_customer_back(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials, tmp_path: Path
) -> None:
    await run(
        db,
        shop.shop_id,
        shopify_event(
            "customers/create",
            customer_payload(ERASED, ERASED_EMAIL, "Zebediah", "Quillfeather"),
            event_id="c1",
        ),
    )
    # The merchant's customer export, imported while Shopify's customers/redact is applied.
    export = tmp_path / "customers.jsonl"
    export.write_bytes(
        orjson.dumps(customer_payload(ERASED, ERASED_EMAIL, "Zebediah", "Quillfeather")) + b"\n"
    )
    redaction = shopify_event(
        "customers/redact", redact_payload(ERASED, ERASED_EMAIL, []), event_id="redact-1"
    )
    async with pool.acquire() as eraser:
        erasing = eraser.transaction()
        await erasing.start()
        await apply_events(eraser, [ShopEvent(shop.shop_id, redaction)], RuleBook(), NOW)
        # The import's batch reads before the erasure commits, then waits for the row.
        importing = asyncio.create_task(import_files(pool, shop.domain, [export], now=NOW))
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while not await someone_waits_on_a_lock(db, eraser.get_server_pid()):
            assert datetime.now(UTC) < deadline, "the import never waited for the erasure"
            assert not importing.done(), importing
            await asyncio.sleep(0.02)
        await erasing.commit()
        await asyncio.wait_for(importing, 20)

    # The erasure committed first; nothing of the customer may exist after it.
    assert await tables_containing(db, ERASED_EMAIL) == []
    customers = await db.fetchval(
        "SELECT count(*) FROM customers WHERE shop_id = $1 AND customer_id = $2",
        shop.shop_id,
        ERASED,
    )
    assert customers == 0
