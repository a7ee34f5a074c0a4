"""Records and failures that once stopped a real `segflow segmenter` for good: a shop domain no
shop could have, bytes nested too deep to parse, a record too big to dead-letter whole, a
statement waiting on a lock for ever, and an offset commit to a broker that is gone."""

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from services.common.kafka import ensure_topics
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from tests.helpers import BrokerFactory, drain_topic
from tests.integration.segmenter.processes import (
    SegmenterProcess,
    order_event,
    poll,
    produce,
    segmenter_env,
)


def envelope(shop: str, event_id: str) -> bytes:
    now = datetime.now(UTC).isoformat()
    body = {
        "event_id": event_id,
        "shop": shop,
        "topic": "custom/page_viewed",
        "source": "custom",
        "customer_id": "1",
        "occurred_at": now,
        "received_at": now,
        "payload": {},
    }
    return json.dumps(body).encode()


async def processed(db: asyncpg.Connection, count: int) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM processed_events") == count)


async def test_records_no_decoder_or_lookup_can_take_are_dead_lettered_and_the_rest_goes_on(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    key, good = order_event(shop.domain, 1, 1, "10.00")
    oversize = b"x" * (1_048_576 - 200)
    while DefaultRecordBatchBuilder.estimate_size_in_bytes(key, oversize, []) > 1_048_576:
        oversize = oversize[:-1]
    # All on the good record's partition, ahead of it.
    await produce(
        settings,
        [
            (key, envelope("bad\u0000shop", "e1")),
            (key, b"[" * 100_000),
            (key, oversize),
            (key, good),
        ],
    )
    member = SegmenterProcess(segmenter_env(settings), tmp_path / "s.log").start()
    try:

        async def all_done() -> bool:
            member.assert_alive()
            return await processed(db, 1)

        await poll(all_done, 40, "the good order behind the bad records")
        dead = await drain_topic(settings.kafka_bootstrap_servers or "", settings.topic_dead_letter)
        assert sorted(r.headers["reason"] for r in dead) == [
            b"invalid_envelope",
            b"invalid_envelope",
            b"unknown_shop",
        ]
        truncated = [r for r in dead if "truncated_from" in r.headers]
        assert [int(r.headers["truncated_from"]) for r in truncated] == [len(oversize)]
        assert await member.metric("segflow_segmenter_retries_total") == 0
    finally:
        assert await member.stop() == 0, member.log_tail()


async def test_a_statement_waiting_on_a_lock_fails_is_shown_and_retried(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    env = segmenter_env(settings, SEGFLOW_SEGMENTER_LOCK_TIMEOUT_SECONDS="0.5")
    member = SegmenterProcess(env, tmp_path / "s.log").start()
    blocker = await asyncpg.connect(settings.database_url)
    try:
        await member.wait_ready()
        await blocker.execute("BEGIN; LOCK TABLE processed_events IN EXCLUSIVE MODE")
        await produce(settings, [order_event(shop.domain, 1, 1, "10.00")])

        async def not_ready() -> dict[str, object] | None:
            answer = await member.readyz()
            return answer[1] if answer is not None and answer[0] == 503 else None

        body = await poll(not_ready, 20, "/readyz to say the database is failing")
        assert "55P03" in json.dumps(body)
        await blocker.execute("ROLLBACK")
        await poll(lambda: processed(db, 1), 20, "the order once the lock is gone")
        await poll(member.ready, 20, "/readyz green again")
    finally:
        await blocker.close()
        assert await member.stop() == 0, member.log_tail()


async def test_an_offset_commit_to_a_gone_broker_is_retried_and_sigterm_still_stops(
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    tmp_path: Path,
    broker_factory: BrokerFactory,
) -> None:
    broker = await broker_factory.start()
    mine = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers})
    topics = [mine.topic_events, mine.topic_segment_changes, mine.topic_dead_letter]
    await ensure_topics(broker.bootstrap_servers, topics, 3)
    env = segmenter_env(mine, SEGFLOW_OFFSET_COMMIT_TIMEOUT_SECONDS="1")
    member = SegmenterProcess(env, tmp_path / "s.log").start()
    blocker = await asyncpg.connect(settings.database_url)
    try:
        await member.wait_ready()
        # The batch waits inside its transaction while the broker goes away.
        await blocker.execute("BEGIN; LOCK TABLE processed_events IN EXCLUSIVE MODE")
        await produce(mine, [order_event(shop.domain, 1, 1, "10.00")])

        async def waiting() -> bool:
            # The batch's dedupe insert, not the scheduler's purge, is what waits.
            waiting = await db.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE NOT l.granted AND a.query LIKE '%INSERT INTO processed_events%'"
            )
            return bool(waiting)

        await poll(waiting, 20, "the batch to wait on the lock")
        broker.stop()
        await blocker.execute("ROLLBACK")
        await poll(lambda: processed(db, 1), 20, "the batch's database commit")
        await poll(
            lambda: member.metric_at_least("segflow_segmenter_retries_total", 1),
            30,
            "the commit to the gone broker to fail and be retried",
        )
        started = time.monotonic()
        assert await member.stop(timeout=25) == 0, member.log_tail()
        assert time.monotonic() - started < 25
    finally:
        await blocker.close()
        await member.stop()
