"""Statements cancelled by statement_timeout / lock_timeout are retried, never dead-lettered.

The test holds a lock every batch needs, with the segmenter's statement or lock timeout set to
200 ms, so each attempt fails with QueryCanceledError (57014) or LockNotAvailableError
(55P03); then it lets go.
"""

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.storage.segments import SegmentSpec, create_segment
from tests.helpers import drain_topic
from tests.integration.segmenter.processes import (
    VIP,
    SegmenterProcess,
    order_event,
    poll,
    produce,
    segmenter_env,
)

CUSTOMERS = 10


async def processed(db: asyncpg.Connection, expected: int) -> bool:
    done = await db.fetchval("SELECT count(*) FROM processed_events")
    unpublished = await db.fetchval(
        "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"
    )
    return bool(done == expected and unpublished == 0)


@pytest.mark.parametrize(
    ("setting", "sqlstate"),
    [
        ("SEGFLOW_SEGMENTER_STATEMENT_TIMEOUT_SECONDS", "57014"),
        ("SEGFLOW_SEGMENTER_LOCK_TIMEOUT_SECONDS", "55P03"),
    ],
)
async def test_timed_out_statements_are_retried_and_applied_once(
    setting: str,
    sqlstate: str,
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    async with db.transaction():
        await create_segment(
            db, shop.shop_id, SegmentSpec("vip", "VIP", "", VIP, []), datetime.now(UTC)
        )
    blocker = await asyncpg.connect(settings.database_url)
    env = segmenter_env(settings, **{setting: "0.2"})
    segmenter = SegmenterProcess(env, tmp_path / "segmenter.log")
    segmenter.start()
    try:
        await segmenter.wait_ready()
        await blocker.execute("BEGIN; LOCK TABLE processed_events IN EXCLUSIVE MODE")
        # Two $600 orders per customer.
        await produce(
            settings,
            [
                order_event(shop.domain, order_id + n, 4000 + n, "600.00")
                for order_id in (7000, 8000)
                for n in range(CUSTOMERS)
            ],
        )

        consumer = await segmenter.wait_reported(20, sqlstate=sqlstate)
        assert consumer["dependency"] == "database"
        await poll(
            lambda: segmenter.metric_at_least(
                "segflow_segmenter_retries_total", 3, component="consumer"
            ),
            20,
            "a few retries",
        )
        assert await db.fetchval("SELECT count(*) FROM processed_events") == 0

        await blocker.execute("ROLLBACK")
        await poll(lambda: processed(db, 2 * CUSTOMERS), 30, "every event")
        await poll(segmenter.ready, 15, "/readyz to be green again")
    finally:
        await blocker.close()
        code = await segmenter.stop()
    assert code == 0, segmenter.log_tail()

    rows = await db.fetch("SELECT orders_count, total_spent FROM customers")
    assert len(rows) == CUSTOMERS
    assert {(r["orders_count"], str(r["total_spent"])) for r in rows} == {(2, "1200.00")}
    entries = await db.fetch("SELECT customer_id, change FROM segment_changes")
    assert sorted(r["customer_id"] for r in entries) == [4000 + n for n in range(CUSTOMERS)]
    assert {r["change"] for r in entries} == {"entered"}
    dead = await drain_topic(settings.kafka_bootstrap_servers or "", settings.topic_dead_letter)
    assert dead == []
