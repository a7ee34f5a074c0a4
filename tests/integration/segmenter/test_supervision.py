"""`segflow segmenter` never half-runs: without a running consumer it exits non-zero."""

import asyncio
import time
from pathlib import Path

import asyncpg

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from tests.helpers import free_port
from tests.integration.segmenter.processes import (
    SegmenterProcess,
    order_event,
    poll,
    produce,
    segmenter_env,
)


async def test_a_consumer_that_cannot_start_makes_the_process_exit_non_zero(
    settings: Settings, tmp_path: Path
) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    env = segmenter_env(
        settings, KAFKA_BOOTSTRAP_SERVERS=nobody, SEGFLOW_STARTUP_TIMEOUT_SECONDS="2"
    )
    segmenter = SegmenterProcess(env, tmp_path / "segmenter.log").start()
    try:
        deadline = time.monotonic() + 20
        while segmenter.alive() and time.monotonic() < deadline:
            # While it lives the API may answer, but never "ready": no consumer runs.
            answer = await segmenter.readyz()
            assert answer is None or answer[0] == 503, answer
            await asyncio.sleep(0.1)
        assert not segmenter.alive(), "still running without a consumer"
    finally:
        code = await segmenter.stop()
    assert code == 1, segmenter.log_tail()
    assert "not reachable" in segmenter.log_tail()


async def test_a_consumer_that_dies_takes_the_process_down_with_exit_1(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    # The hook raises an unexpected error in the consumer task, as a bug in it would.
    env = segmenter_env(settings, SEGFLOW_CRASH_AT="after_db_commit:1:raise")
    segmenter = SegmenterProcess(env, tmp_path / "segmenter.log").start()
    try:
        await segmenter.wait_ready()
        await produce(settings, [order_event(shop.domain, 1, 42, "10.00")])
        code = await asyncio.wait_for(asyncio.to_thread(segmenter.process.wait), 30)
    finally:
        await segmenter.stop()
    assert code == 1, segmenter.log_tail()
    # It died after the database commit: the event is applied once, and a restart replays it
    # as a duplicate.
    assert await db.fetchval("SELECT count(*) FROM processed_events") == 1
    again = SegmenterProcess(segmenter_env(settings), tmp_path / "again.log").start()
    try:
        await again.wait_ready()
        await poll(
            lambda: again.metric_at_least("segflow_segmenter_events_total", 1, outcome="duplicate"),
            30,
            "the replayed event to be skipped",
        )
    finally:
        assert await again.stop() == 0, again.log_tail()
    assert await db.fetchval("SELECT orders_count FROM customers WHERE customer_id = 42") == 1
