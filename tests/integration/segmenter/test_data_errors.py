"""Events the database refuses for their own data are dead-lettered; their batch goes on.

The other side of the fault tests: a data exception (SQLSTATE class 22) is the event's fault,
so it must neither stop the partition nor be retried.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.common.envelope import EnvelopeMeta, encode_envelope, partition_key
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from tests.helpers import drain_topic
from tests.integration.segmenter.processes import (
    SegmenterProcess,
    order_event,
    poll,
    produce,
    segmenter_env,
)


def customer_update(shop: str, customer: int, email: str) -> tuple[bytes, bytes]:
    now = datetime.now(UTC)
    payload = {
        "id": customer,
        "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
        "email": email,
    }
    meta = EnvelopeMeta(
        event_id=f"customer-{customer}",
        shop=shop,
        topic="customers/update",
        source="shopify",
        customer_id=str(customer),
        occurred_at=now,
        received_at=now,
    )
    return partition_key(shop, str(customer)), encode_envelope(meta, json.dumps(payload).encode())


async def test_values_postgres_refuses_dead_letter_only_their_events(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    # JSON allows "\u0000"; PostgreSQL text and jsonb do not (SQLSTATE 22021 / 22P05).
    nul = customer_update(shop.domain, 12, "ada\u0000@example.com")
    # A total beyond what decimal arithmetic can handle: the reducer itself fails on it.
    huge = order_event(shop.domain, 2, 13, "1e200000")
    events = [
        order_event(shop.domain, 1, 11, "10.00"),
        nul,
        huge,
        order_event(shop.domain, 3, 11, "20.00"),
        customer_update(shop.domain, 14, "grace@example.com"),
    ]
    segmenter = SegmenterProcess(segmenter_env(settings), tmp_path / "segmenter.log").start()
    try:
        await segmenter.wait_ready()
        # One partition for all of them, so they share batches with the poison.
        same_key = partition_key(shop.domain, "11")
        await produce(settings, [(same_key, value) for _, value in events])
        await poll(
            lambda: segmenter.metric_at_least("segflow_segmenter_dead_letters_total", 2),
            30,
            "two dead letters",
        )

        async def rest_applied() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM processed_events") == 3)

        await poll(rest_applied, 30, "the rest of the batch")
        retries = await segmenter.metric("segflow_segmenter_retries_total")
    finally:
        code = await segmenter.stop()
    assert code == 0, segmenter.log_tail()
    assert retries == 0
    dead = await drain_topic(settings.kafka_bootstrap_servers or "", settings.topic_dead_letter)
    assert sorted(d.value for d in dead) == sorted([nul[1], huge[1]])
    assert {d.headers["reason"] for d in dead} == {b"processing_error"}
    spent = await db.fetchval("SELECT total_spent FROM customers WHERE customer_id = 11")
    assert str(spent) == "30.00"
    assert await db.fetchval("SELECT count(*) FROM customers WHERE customer_id = 14") == 1
