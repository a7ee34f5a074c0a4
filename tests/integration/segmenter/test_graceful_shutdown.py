"""SIGTERM to a real `segflow segmenter` working through a stream of orders: it starts no new
batch, commits the one in hand, and exits 0 within SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS with
exactly the events it applied committed; a restart applies the rest, none twice."""

from pathlib import Path

import asyncpg

from services.common.kafka import make_producer
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from tests.integration.roles import BOUND_SECONDS, RoleProcess
from tests.integration.segmenter.processes import (
    SegmenterProcess,
    committed_offsets,
    offsets_are,
    order_event,
    poll,
    segmenter_env,
)

ORDERS = 300
CUSTOMERS = 25
BATCH = 4  # segmenter_env's batch size: the most a batch in hand can add after the signal


async def produce_orders(settings: Settings, shop: ShopCredentials) -> dict[int, list[int]]:
    """ORDERS orders/create events, one at a time; per partition, the order ids by offset."""
    producer = make_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    by_partition: dict[int, list[int]] = {}
    try:
        for order in range(1, ORDERS + 1):
            key, value = order_event(shop.domain, order, 1 + order % CUSTOMERS, "10.00")
            sent = await producer.send_and_wait(settings.topic_events, value, key=key)
            ids = by_partition.setdefault(sent.partition, [])
            if sent.offset != len(ids):
                raise AssertionError(f"offsets of partition {sent.partition} are not 0, 1, …")
            ids.append(order)
    finally:
        await producer.stop()
    return by_partition


async def test_sigterm_mid_stream_commits_exactly_what_it_applied_and_a_restart_doubles_nothing(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    by_partition = await produce_orders(settings, shop)
    env = segmenter_env(settings, SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS=str(BOUND_SECONDS))
    segmenter = RoleProcess("segmenter", env, tmp_path / "segmenter.log").start()
    try:

        async def some_applied() -> int | None:
            segmenter.assert_alive()
            applied = await db.fetchval("SELECT count(*) FROM orders")
            return applied if applied >= 40 else None

        await poll(some_applied, 30, "the segmenter to work through the stream")
        signalled = segmenter.terminate()
        at_signal = await db.fetchval("SELECT count(*) FROM orders")
        code, took = await segmenter.exit_after(signalled, BOUND_SECONDS + 5)
    finally:
        await segmenter.stop()
    assert code == 0, segmenter.log_tail()
    assert took < BOUND_SECONDS, f"took {took:.1f} s to exit"

    applied = {row["order_id"] for row in await db.fetch("SELECT order_id FROM orders")}
    committed = await committed_offsets(settings)
    below_committed = {
        order for number, ids in by_partition.items() for order in ids[: committed.get(number, 0)]
    }
    assert applied == below_committed, "what is applied and what is committed differ"
    # No batch started after the signal: at most the one in hand (read a moment later).
    assert len(applied) - at_signal <= 2 * BATCH, (at_signal, len(applied))
    assert len(applied) < ORDERS, "it went on with the stream after SIGTERM"

    again = SegmenterProcess(segmenter_env(settings), tmp_path / "again.log").start()
    try:
        ends = {number: len(ids) for number, ids in by_partition.items()}
        await poll(lambda: offsets_are(settings, ends), 30, "the restart to finish the stream")
        duplicates = await again.metric("segflow_segmenter_events_total", outcome="duplicate")
    finally:
        assert await again.stop() == 0, again.log_tail()
    assert duplicates == 0, "a restart after a clean stop saw events applied already"
    assert await db.fetchval("SELECT count(*) FROM orders") == ORDERS
    assert await db.fetchval("SELECT sum(orders_count) FROM customers") == ORDERS
