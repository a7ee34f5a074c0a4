"""Publishes outbox rows to segflow.segment-changes and marks them published: by the worker's
publisher right after each batch commits, and by the scheduler's rounds."""

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from services.common.backoff import Backoff
from services.common.metrics import bounded_label
from services.segmenter.domain.rules.templates import builtin_handles
from services.segmenter.runtime.faults import infrastructure_fault
from services.segmenter.runtime.health import ComponentHealth
from services.segmenter.runtime.metrics import SegmenterMetrics

logger = logging.getLogger(__name__)

# One publisher at a time, across replicas: with several, one could publish a customer's
# later change while another still waits for the broker's ack of the earlier one.
PUBLISHER_LOCK = "SELECT pg_try_advisory_xact_lock($1::int, $2::int)"
PUBLISHER_LOCK_KEY = (0x5E7, 1)
# How soon a publisher that found the lock held looks again.
LOCK_BUSY_RETRY_SECONDS = 0.05
# Causes of bulk work, published after live changes (the partial indexes of migration 0003
# name the same list).

_BULK = "cause IN ('backfill', 'import', 'segment_deleted')"
_LIVE = "cause NOT IN ('backfill', 'import', 'segment_deleted')"
# Up to $1 live changes, and up to $2 bulk ones ($1 when no live change waits), so neither
# lane starves the other. A customer's changes still leave in seq order:
# - the earlier bulk changes of a customer with a live change come along with it;
# - a bulk change is taken only if every live change before it is taken too (all live ones
#   fit, or its seq is below the last live one taken).
# One statement, so one snapshot: a customer's rows are written under that customer's lock
# (or the shop's exclusive one), so a visible row means every earlier row of the customer
# is visible too.
UNPUBLISHED = f"""
WITH live AS (
    SELECT seq, shop_id, customer_id FROM segment_changes
    WHERE published_at IS NULL AND {_LIVE}
    ORDER BY seq LIMIT $1
), edge AS (
    SELECT count(*) AS taken, max(seq) AS last FROM live
), bulk_share AS (
    SELECT seq FROM segment_changes
    WHERE published_at IS NULL AND {_BULK}
      AND ((SELECT taken FROM edge) < $1 OR seq < (SELECT last FROM edge))
    ORDER BY seq
    LIMIT (SELECT CASE WHEN taken = 0 THEN $1 ELSE $2 END FROM edge)
), bulk_before_live AS (
    SELECT b.seq
    FROM (SELECT shop_id, customer_id, max(seq) AS last FROM live GROUP BY 1, 2) l
    CROSS JOIN LATERAL (
        SELECT c.seq FROM segment_changes c
        WHERE c.shop_id = l.shop_id AND c.customer_id = l.customer_id
          AND c.published_at IS NULL AND c.{_BULK} AND c.seq < l.last
    ) b
)
SELECT c.*, s.domain FROM segment_changes c JOIN shops s ON s.id = c.shop_id
WHERE c.seq IN (
    SELECT seq FROM live UNION ALL SELECT seq FROM bulk_share
    UNION ALL SELECT seq FROM bulk_before_live
)
ORDER BY c.seq
"""
MARK_PUBLISHED = "UPDATE segment_changes SET published_at = $2 WHERE change_id = ANY($1::uuid[])"
# Unpublished rows per lane and the age of each lane's oldest (wall time, like published_at);
# the partial indexes of migration 0003 hold exactly these rows.
BACKLOG = f"""
SELECT CASE WHEN {_BULK} THEN 'bulk' ELSE 'live' END AS lane, count(*) AS waiting,
       extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS oldest
FROM segment_changes WHERE published_at IS NULL
GROUP BY 1
"""
LANES = ("live", "bulk")
PURGE_PUBLISHED = """
DELETE FROM segment_changes WHERE change_id IN (
    SELECT change_id FROM segment_changes WHERE published_at < $1 LIMIT $2
)
"""


def change_message(row: asyncpg.Record) -> dict[str, object]:
    """The JSON body of one change on segflow.segment-changes (ids as strings)."""
    return {
        "change_id": str(row["change_id"]),
        # Increases with every change written; consumers order a customer's changes by it.
        "seq": row["seq"],
        "shop": row["domain"],
        "customer_id": str(row["customer_id"]),
        "segment": {
            "id": str(row["segment_id"]),
            "handle": row["segment_handle"],
            "version": row["segment_version"],
        },
        "change": row["change"],
        "cause": row["cause"],
        "cause_event_id": row["cause_event_id"],
        "received_at": row["received_at"].isoformat() if row["received_at"] else None,
        "changed_at": row["changed_at"].isoformat(),
    }


async def publish_pending(
    pool: asyncpg.Pool,
    producer: AIOKafkaProducer,
    topic: str,
    metrics: SegmenterMetrics,
    batch: int = 500,
    before_marking: Callable[[], None] | None = None,
    max_rows: int | None = None,
    send_timeout: float | None = None,
    stop: asyncio.Event | None = None,
    on_busy: Callable[[], None] | None = None,
) -> int:
    """Publish unpublished changes in order (acks=all) and mark them; return how many.

    Stops after `max_rows` (the rest is left to the next call), once `stop` is set (between
    slices: the rest waits in the outbox), or when another publisher holds the lock (then
    `on_busy` is called). `send_timeout` bounds the wait for each batch's acks.
    """
    total = 0
    while (max_rows is None or total < max_rows) and not (stop is not None and stop.is_set()):
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(PUBLISHER_LOCK, *PUBLISHER_LOCK_KEY):
                if on_busy is not None:
                    on_busy()
                return total
            # A quarter of a batch for bulk changes while live ones wait.
            rows = await conn.fetch(UNPUBLISHED, batch, max(1, batch // 4))
            if not rows:
                return total
            try:
                # Bounded when asked: with the broker gone, aiokafka can wait for its
                # metadata for ever, and the round would neither finish nor be retried.
                async with asyncio.timeout(send_timeout):
                    futures = []
                    for row in rows:
                        key = f"{row['domain']}/{row['customer_id']}".encode()
                        value = json.dumps(change_message(row), separators=(",", ":")).encode()
                        futures.append(await producer.send(topic, value, key=key))
                    await asyncio.gather(*futures)
            except TimeoutError as exc:
                raise KafkaTimeoutError(f"no acks for {len(rows)} changes in time") from exc
            if before_marking is not None:
                before_marking()
            # Wall time, not the evaluation clock: this measures real delivery latency.
            now = datetime.now(UTC)
            await conn.execute(MARK_PUBLISHED, [row["change_id"] for row in rows], now)
        metrics.changes_published.inc(len(rows))
        for row in rows:
            handle = bounded_label(row["segment_handle"], builtin_handles())
            metrics.segment_changes.labels(handle, row["change"]).inc()
            if row["received_at"] is not None:
                metrics.end_to_end_seconds.observe(
                    max(0.0, (now - row["received_at"]).total_seconds())
                )
        total += len(rows)
    return total


async def observe_backlog(pool: asyncpg.Pool, metrics: SegmenterMetrics) -> None:
    """Set the outbox backlog gauges from the table (a lane with nothing waiting reads 0)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(BACKLOG)
    found = {row["lane"]: row for row in rows}
    for lane in LANES:
        row = found.get(lane)
        metrics.outbox_backlog.labels(lane).set(row["waiting"] if row else 0)
        metrics.outbox_oldest_seconds.labels(lane).set(max(0.0, row["oldest"]) if row else 0)


async def purge_published(pool: asyncpg.Pool, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` changes published before `cutoff`; return how many."""
    async with pool.acquire() as conn:
        status: str = await conn.execute(PURGE_PUBLISHED, cutoff, limit)
    return int(status.split()[-1])


class OutboxPublisher:
    """Publishes the outbox beside the consumer loop, woken by each batch's commit.

    The loop moves on to its next batch (its offsets committed: the changes are safe in the
    outbox) while this publishes the last one's changes. A failing dependency is retried with
    backoff; any other error is raised and ends `run`.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        topic: str,
        metrics: SegmenterMetrics,
        backoff: Backoff,
        health: ComponentHealth,
        send_timeout: float,
        before_marking: Callable[[], None] | None = None,
        after_publish: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._topic = topic
        self._metrics = metrics
        self._backoff = backoff
        self._health = health
        self._send_timeout = send_timeout
        self._before_marking = before_marking
        self._after_publish = after_publish
        self._wake = asyncio.Event()
        self._busy = False

    def poke(self) -> None:
        """Publish now (or as soon as the round in hand ends): changes were committed."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish each time poked, until `stop` is set; then one last round."""
        failures = 0
        self._health.running()
        while True:
            if not stop.is_set():
                await _first_of(self._wake, stop)
            last = stop.is_set()
            self._wake.clear()
            began = time.perf_counter()
            try:
                published = await publish_pending(
                    self._pool,
                    self._producer,
                    self._topic,
                    self._metrics,
                    before_marking=self._before_marking,
                    send_timeout=self._send_timeout,
                    on_busy=self._note_busy,
                )
            except Exception as exc:
                fault = infrastructure_fault(exc, "database")
                if fault is None:
                    raise
                if last:
                    # Left in the outbox: the next start (or another replica) publishes it.
                    logger.warning(
                        "outbox not published on the way out: the %s is failing", fault.dependency
                    )
                    return
                failures += 1
                self._metrics.retries.labels("publisher", fault.dependency, fault.reason).inc()
                self._health.retrying(fault, failures)
                logger.warning(
                    "outbox publish failed: the %s is failing; retrying",
                    fault.dependency,
                    extra={"reason": fault.reason, "attempt": failures},
                )
                self._wake.set()
                try:
                    await asyncio.wait_for(stop.wait(), self._backoff.delay(failures))
                except TimeoutError:
                    pass
                continue
            self._metrics.stage_seconds.labels("publish").observe(time.perf_counter() - began)
            if failures:
                failures = 0
                if self._health.state == "retrying":
                    self._health.running()
            if published and self._after_publish is not None:
                self._after_publish()
            if last:
                return
            if self._busy:
                # Another publisher held the lock; it may have read the outbox before this
                # commit, so look again shortly rather than wait for the next commit.
                self._busy = False
                try:
                    await asyncio.wait_for(stop.wait(), LOCK_BUSY_RETRY_SECONDS)
                except TimeoutError:
                    pass
                self._wake.set()

    def _note_busy(self) -> None:
        self._busy = True


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
