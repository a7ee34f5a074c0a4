"""The segmenter service: the consumer worker and the scheduler, with their connections.

Supervision: `run_segmenter` returns only when `stop` is set. It raises when the consumer cannot
start (no broker within `startup_timeout_seconds`, no database) or when the worker or the
scheduler dies of an error that is not a dependency failing (a bug); the caller then exits
non-zero, so the process never serves its API without a consumer behind it. A failing
database or broker is not fatal: both tasks retry with backoff and /readyz says why.
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from services.common.backoff import Backoff
from services.common.db import create_pool
from services.common.kafka import make_consumer, make_producer, wait_for_broker
from services.common.settings import Settings
from services.segmenter.runtime.faults import infrastructure_fault
from services.segmenter.runtime.health import ComponentHealth, SegmenterHealth
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.scheduler import Scheduler
from services.segmenter.runtime.worker import SegmenterWorker

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def run_segmenter(
    settings: Settings,
    metrics: SegmenterMetrics,
    stop: asyncio.Event,
    *,
    clock: Callable[[], datetime] = utc_now,
    started: asyncio.Event | None = None,
    health: SegmenterHealth | None = None,
) -> None:
    """Consume and schedule until `stop` is set; a task that dies stops the other and re-raises."""
    health = health or SegmenterHealth()
    try:
        await _run(settings, metrics, stop, clock, started, health)
    except BaseException as exc:
        health.consumer.stopped(f"failed: {exc!r}")
        health.scheduler.stopped(f"failed: {exc!r}")
        raise
    health.consumer.stopped("stopped")
    health.scheduler.stopped("stopped")


async def _run(
    settings: Settings,
    metrics: SegmenterMetrics,
    stop: asyncio.Event,
    clock: Callable[[], datetime],
    started: asyncio.Event | None,
    health: SegmenterHealth,
) -> None:
    bootstrap = settings.require_kafka()
    await wait_for_broker(bootstrap, timeout=settings.startup_timeout_seconds)
    pool = await create_pool(
        settings.require_database_url(),
        settings.db_pool_min,
        settings.db_pool_max,
        statement_timeout=settings.segmenter_statement_timeout_seconds,
        lock_timeout=settings.segmenter_lock_timeout_seconds,
    )
    producer = make_producer(bootstrap)
    consumer = make_consumer(
        bootstrap,
        settings.segmenter_group,
        max_records=settings.segmenter_batch_size,
        max_poll_interval_ms=settings.consumer_max_poll_interval_ms,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        rebalance_timeout_ms=settings.consumer_rebalance_timeout_ms,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
    )
    try:
        await producer.start()
        worker = SegmenterWorker(
            settings,
            pool,
            consumer,
            producer,
            metrics,
            clock,
            health=health.consumer,
            publisher_health=health.publisher,
        )
        consumer.subscribe([settings.topic_events], listener=worker.listener)
        await consumer.start()
        scheduler = Scheduler(settings, pool, producer, metrics, clock)
        if started is not None:
            started.set()
        tasks = [
            asyncio.create_task(worker.run(stop), name="segmenter-worker"),
            asyncio.create_task(
                _keep_scheduling(scheduler, settings, metrics, health.scheduler, stop),
                name="segmenter-scheduler",
            ),
        ]
        observer = asyncio.create_task(scheduler.observe(stop), name="segmenter-backlog-observer")
        # A bug in it stops the others, as one in them does.
        observer.add_done_callback(lambda _: stop.set())
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        # It only reports: nothing of it is to finish, and a query waiting on a database that
        # is gone must not hold the stop.
        observer.cancel()
        await asyncio.gather(*tasks, observer, return_exceptions=True)
        for task in [*done, observer]:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
    finally:
        # Each close is bounded and on its own: with the broker gone, aiokafka's consumer can
        # fail (or wait) leaving its group, and the producer and pool must still be closed.
        await _close(consumer.stop(), "consumer")
        await _close(producer.stop(), "producer")
        await _close(pool.close(), "database pool")
        logger.info("segmenter stopped")


async def _close(closing: Coroutine[Any, Any, None], what: str, timeout: float = 10) -> None:
    """Await a close within `timeout`; a failure is logged, not raised (nothing is left to
    lose: offsets not committed are replayed)."""
    try:
        await asyncio.wait_for(closing, timeout)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        logger.warning("closing the %s was cut short", what)
    except Exception as exc:  # noqa: BLE001 - a close that fails must not stop the others
        logger.warning("closing the %s failed: %s", what, type(exc).__name__)


async def _keep_scheduling(
    scheduler: Scheduler,
    settings: Settings,
    metrics: SegmenterMetrics,
    health: ComponentHealth,
    stop: asyncio.Event,
) -> None:
    """Run the scheduler; when a dependency fails, start it again after a backoff delay."""
    backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds, random.Random())
    failures = 0
    while not stop.is_set():
        health.running()
        began = time.monotonic()
        try:
            await scheduler.run(stop)
            return
        except Exception as exc:
            fault = infrastructure_fault(exc, "database")
            if fault is None:
                raise
            # A scheduler that ran for a while before failing starts its backoff afresh.
            failures = 1 if time.monotonic() - began > settings.retry_max_seconds else failures + 1
            metrics.retries.labels("scheduler", fault.dependency, fault.reason).inc()
            health.retrying(fault, failures)
            logger.warning(
                "scheduler round failed: the %s is failing; retrying",
                fault.dependency,
                extra={"reason": fault.reason, "sqlstate": fault.sqlstate, "attempt": failures},
            )
        try:
            await asyncio.wait_for(stop.wait(), backoff.delay(failures))
        except TimeoutError:
            pass
