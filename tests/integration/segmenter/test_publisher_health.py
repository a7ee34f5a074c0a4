"""Review finding: a consumer batch that succeeds clears the outbox publisher's "retrying".

The publisher reports into the consumer's health (runtime/worker.py passes `self._health`), so
/readyz is meant to say when changes cannot be published. But `_process_until_done` ends every
batch with `if state == "retrying": running()`, whoever set it. While the publisher waits out
its backoff, each batch the consumer finishes turns /readyz green again: the changes pile up
unpublished in the outbox and the segmenter says it is ready.

The publisher is made to fail by bounding its acks below any real round trip
(SEGFLOW_OUTBOX_SEND_TIMEOUT_SECONDS), the stand-in for acks slower than the bound (the changes
topic's leader unreachable while the events topic's is fine).
"""

from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.storage.segments import SegmentSpec, create_segment
from tests.integration.segmenter.processes import (
    SegmenterProcess,
    order_event,
    poll,
    produce,
    segmenter_env,
)

OVER_500 = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 500}]}


async def test_readyz_stays_red_while_the_outbox_cannot_be_published(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    async with db.transaction():
        await create_segment(
            db, shop.shop_id, SegmentSpec("big", "Big", "", OVER_500, []), datetime.now(UTC)
        )
    env = segmenter_env(
        settings,
        SEGFLOW_OUTBOX_SEND_TIMEOUT_SECONDS="0.000001",
        # One failure, then a long backoff: the publisher is not heard from again in this test.
        SEGFLOW_RETRY_INITIAL_SECONDS="120",
        SEGFLOW_RETRY_MAX_SECONDS="120",
        SEGFLOW_SCHEDULER_INTERVAL_SECONDS="600",
    )
    member = SegmenterProcess(env, tmp_path / "segmenter.log")
    member.start()
    try:
        await member.wait_ready(60)
        await produce(settings, [order_event(shop.domain, 9001, 501, "600.00")])
        # The change is written; publishing it fails, and /readyz says so.
        report = await member.wait_reported(
            60, component="publisher", state="retrying", dependency="broker"
        )
        assert report["attempts"] == 1
        unpublished = "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"
        assert await db.fetchval(unpublished) == 1

        # Another event: the consumer applies it fine; its change cannot be published either.
        await produce(settings, [order_event(shop.domain, 9002, 502, "600.00")])
        # The batch-size histogram is observed after the offsets are committed, with no await
        # before the consumer's end-of-batch health update.
        await poll(
            lambda: member.metric_at_least("segflow_segmenter_batch_size_count", 2),
            60,
            "the second batch",
        )
        assert await db.fetchval(unpublished) == 2
        answer = await member.readyz()
        assert answer is not None
        status, body = answer
        assert status == 503, (
            f"/readyz is {status} {body['publisher']} with {await db.fetchval(unpublished)} "
            "changes unpublishable in the outbox: the consumer's batch cleared the publisher's "
            "retrying state"
        )
    finally:
        await member.stop()
