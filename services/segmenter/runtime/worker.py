"""The segmenter's consumer loop: segflow.events → one transaction per batch → outbox → offsets.

Each commit wakes the outbox publisher (a task beside the loop), which sends the batch's
changes while the loop commits the offsets and takes the next batch: the changes are durable
in the outbox once committed, so nothing waits for their publishing.

Failures split in two (services/segmenter/runtime/faults.py). An event that cannot be applied is
dead-lettered and the rest of its batch goes on. A database or broker failing stops the batch
before its offsets are committed, and the same batch is tried again, with backoff, until it
works; meanwhile /readyz names the failing dependency.
"""

import asyncio
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Gauge

from services.common import privacy
from services.common.backoff import Backoff
from services.common.metrics import forget_partitions, topic_label
from services.common.settings import Settings
from services.common.shopify import Product
from services.common.shops import normalize_domain
from services.segmenter.domain.event_decoding import Undecodable, decode_event
from services.segmenter.domain.reducer import Event, changes_customer
from services.segmenter.runtime.faults import Dependency, infrastructure_fault
from services.segmenter.runtime.health import ComponentHealth, ConsumerHealth
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.outbox import OutboxPublisher
from services.segmenter.runtime.pipeline import (
    BatchOutcome,
    ShopEvent,
    StaleOwnershipError,
    apply_events,
)
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage import queries

logger = logging.getLogger(__name__)

# Transient conflicts between replicas: the whole batch is retried at once in a new transaction.
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, StaleOwnershipError)
_CONFLICT_ATTEMPTS = 5


class InjectedCrash(Exception):
    """Raised by the SEGFLOW_CRASH_AT test hook in its `raise` mode, standing in for a bug."""


@dataclass(frozen=True)
class _Decoded:
    record: ConsumerRecord
    shop: str
    event: Event


@dataclass(frozen=True)
class _Item:
    record: ConsumerRecord
    event: ShopEvent


@dataclass
class _Attempt:
    """What survives between attempts at one batch: which dependency the code was talking to
    when it failed, and the records already dead-lettered (not sent twice on a retry)."""

    talking_to: Dependency = "database"
    dead_lettered: set[tuple[str, int, int]] = field(default_factory=set)


# How long the outbox publisher's last round may take when the worker stops.
PUBLISHER_STOP_SECONDS = 10.0
# Below the producer's 1 MiB request limit, leaving room for the key and headers.
DEAD_LETTER_MAX_VALUE_BYTES = 1_000_000


def _could_be_a_domain(shop: str) -> bool:
    try:
        return normalize_domain(shop) == shop
    except ValueError:
        return False


class _FinishBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions move only after the batch in hand is committed (its offsets included).

    A batch waiting out a failing dependency is let go instead (see `revoking`): its offsets
    are not committed, so the next owner starts from it, and the rebalance is not held up for
    as long as the outage lasts.
    """

    def __init__(
        self, lock: asyncio.Lock, revoking: asyncio.Event, health: ConsumerHealth, lag: Gauge
    ) -> None:
        self._lock = lock
        self._revoking = revoking
        self._health = health
        self._lag = lag

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._health.rebalancing = True
        self._revoking.set()
        try:
            async with self._lock:
                self._health.partitions = []
                forget_partitions(self._lag, revoked)
        finally:
            self._revoking.clear()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._health.partitions = sorted(tp.partition for tp in assigned)
        self._health.rebalancing = False


class SegmenterWorker:
    """Consumes events in bounded batches; offsets are committed only after the database commit."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        metrics: SegmenterMetrics,
        clock: Callable[[], datetime],
        health: ConsumerHealth | None = None,
        rng: random.Random | None = None,
        publisher_health: ComponentHealth | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._consumer = consumer
        self._producer = producer
        self._metrics = metrics
        self._clock = clock
        self._health = health or ConsumerHealth()
        self._backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds, rng)
        self._rules = RuleBook()
        self._batch_lock = asyncio.Lock()
        self._revoking = asyncio.Event()
        # Domain → id. A shop deleted and registered again gets a new id: the database's
        # foreign keys say so (see `_apply`), and the batch's shops are looked up again.
        self._shop_ids: dict[str, int] = {}
        # Domains erased by shop/redact, with when: events received before it were the erased
        # shop's, even once the domain is registered again (a lagging partition's).
        self._redacted_at: dict[str, datetime] = {}
        self.listener = _FinishBatchOnRevoke(
            self._batch_lock, self._revoking, self._health, metrics.consumer_lag
        )
        point, _, rest = (settings.crash_at or "").partition(":")
        count, _, mode = rest.partition(":")
        self._crash_point = point or None
        self._crash_after = int(count or 1)
        self._crash_raises = mode == "raise"
        self._publisher = OutboxPublisher(
            pool,
            producer,
            settings.topic_segment_changes,
            metrics,
            Backoff(settings.retry_initial_seconds, settings.retry_max_seconds, rng),
            publisher_health or ComponentHealth(),
            settings.outbox_send_timeout_seconds,
            before_marking=lambda: self._crash_if_told("before_marking_published"),
            after_publish=lambda: self._crash_if_told("after_publish"),
        )

    def _crash_if_told(self, point: str) -> None:
        """The crash test hook: die as kill -9 would, with no cleanup, at the chosen point (or
        raise there, as a bug would)."""
        if point != self._crash_point:
            return
        self._crash_after -= 1
        if self._crash_after > 0:
            return
        if self._crash_raises:
            self._crash_point = None
            raise InjectedCrash(f"SEGFLOW_CRASH_AT {point}")
        logger.warning("crashing at %s as SEGFLOW_CRASH_AT asks", point)
        os.kill(os.getpid(), signal.SIGKILL)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished (or let go) first."""
        self._health.running()
        publisher_stop = asyncio.Event()
        publishing = asyncio.create_task(self._publisher.run(publisher_stop), name="outbox")
        try:
            while not stop.is_set() and not publishing.done():
                batch = await self._consumer.getmany(
                    timeout_ms=200, max_records=self._settings.segmenter_batch_size
                )
                if not any(batch.values()):
                    continue
                self._observe_fetch(batch)
                async with self._batch_lock:
                    await self._process_until_done(batch, stop)
        finally:
            # The publisher ends with a last round, bounded: what it leaves stays in the
            # outbox for the next start.
            publisher_stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(publishing), PUBLISHER_STOP_SECONDS)
            except TimeoutError:
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)
            except Exception:  # noqa: BLE001 - re-raised below unless another error is on its way
                pass
        if publishing.done() and not publishing.cancelled():
            error = publishing.exception()
            if error is not None:
                raise error

    async def _process_until_done(
        self, batch: dict[TopicPartition, list[ConsumerRecord]], stop: asyncio.Event
    ) -> None:
        """Process the batch, retrying it with backoff for as long as a dependency fails.

        The offsets are committed only once it is done. It is let go, uncommitted, when the
        service stops or a rebalance takes the partitions while it waits to retry: whoever owns
        them next starts from the last committed offset, and dedupe makes the replay harmless.
        An error that is no dependency's fault outside the per-event path is a bug: it is
        raised, and the consumer task dies.
        """
        attempt = _Attempt()
        failures = 0
        while True:
            try:
                await self.process(batch, attempt)
            except CommitFailedError:
                # The group rebalanced without this member (it was too slow or lost its
                # session): the partitions may be someone else's now, who replays the batch.
                logger.warning("offsets not committed: the group moved on; the batch is replayed")
                break
            except Exception as exc:
                fault = infrastructure_fault(exc, attempt.talking_to)
                if fault is None:
                    raise
                failures += 1
                self._metrics.retries.labels("consumer", fault.dependency, fault.reason).inc()
                self._health.retrying(fault, failures)
                logger.warning(
                    "batch stopped, offsets not committed: the %s is failing; retrying it",
                    fault.dependency,
                    extra={
                        "reason": fault.reason,
                        "sqlstate": fault.sqlstate,
                        "detail": fault.detail,
                        "attempt": failures,
                    },
                )
                if await self._interrupted(self._backoff.delay(failures), stop):
                    logger.info("letting the uncommitted batch go (stopping or rebalancing)")
                    break
                continue
            if failures:
                logger.info("batch done after %d retries", failures)
            break
        if self._health.state == "retrying":
            self._health.running()

    async def _interrupted(self, delay: float, stop: asyncio.Event) -> bool:
        """Wait `delay` s; True when the service stops or partitions are revoked meanwhile."""
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._revoking.wait())]
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return bool(done)

    async def process(
        self,
        batch: dict[TopicPartition, list[ConsumerRecord]],
        attempt: _Attempt | None = None,
    ) -> None:
        """Decode, dead-letter, apply in one transaction, wake the publisher, commit offsets.

        Raises when a dependency fails (nothing is committed to Kafka then).
        """
        attempt = attempt or _Attempt()
        started = time.perf_counter()
        records = [record for partition in batch.values() for record in partition]
        stage = self._metrics.stage_seconds
        mark = time.perf_counter()
        decoded = await self._decode(records, attempt)
        stage.labels("decode").observe(time.perf_counter() - mark)
        outcome = await self._apply(decoded, attempt)
        self._crash_if_told("after_db_commit")
        erased = {id(item) for item in outcome.erased}
        for item in outcome.applied:
            useful = changes_customer(item.event) or isinstance(item.event.payload, Product)
            outcome_label = "applied" if useful else "ignored"
            if id(item) in erased:
                outcome_label = "erased"
            self._metrics.events.labels(topic_label(item.event.topic), outcome_label).inc()
        self._count_privacy(outcome)
        for item in outcome.duplicates:
            self._metrics.events.labels(topic_label(item.event.topic), "duplicate").inc()
        # The changes are in the outbox: the publisher sends them now, while this batch's
        # offsets are committed and the next batch is taken. Neither waits for the other.
        self._publisher.poke()
        attempt.talking_to = "broker"
        mark = time.perf_counter()
        # Bounded: with the broker gone, aiokafka would wait for a coordinator for ever, the
        # batch neither done nor retried and /readyz none the wiser.
        async with asyncio.timeout(self._settings.offset_commit_timeout_seconds):
            await self._consumer.commit(
                {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
            )
        stage.labels("offset_commit").observe(time.perf_counter() - mark)
        self._crash_if_told("after_offset_commit")
        self._metrics.batch_size.observe(len(records))
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        self._observe_lag(batch)

    def _count_privacy(self, outcome: BatchOutcome) -> None:
        """Count and log the batch's privacy requests: ids only, never what was erased."""
        requests = self._metrics.privacy_requests
        for shop_id, customer_id in outcome.redacted:
            requests.labels("customer_redacted").inc()
            logger.info(
                "customer erased (customers/redact)",
                extra={"shop_id": shop_id, "customer_id": customer_id},
            )
        for shop_id, customer_id in outcome.data_requests:
            requests.labels("data_requested").inc()
            logger.info(
                "data request recorded (customers/data_request)",
                extra={"shop_id": shop_id, "customer_id": customer_id},
            )

    async def _erase_shops(self, decoded: list[_Decoded], attempt: _Attempt) -> None:
        """shop/redact: erase each named shop in a transaction of its own (its exclusive lock
        waits for batches evaluating it). Not deduplicated: erasing twice is erasing once."""
        requests: dict[str, datetime] = {}
        for item in decoded:
            if item.event.topic == "shop/redact" and _could_be_a_domain(item.shop):
                received = item.event.received_at
                requests[item.shop] = max(requests.get(item.shop, received), received)
        if not requests:
            return
        attempt.talking_to = "database"
        now = self._clock()
        for domain, received_at in sorted(requests.items()):
            async with self._pool.acquire() as conn, conn.transaction():
                shop = await conn.fetchrow(privacy.SHOP_CREATED, domain)
                if shop is not None and shop["created_at"] > received_at:
                    # A redelivery of an earlier shop's request: this shop came after it.
                    logger.info("shop/redact older than the shop: ignored")
                    continue
                if shop is None:
                    await privacy.remember_redacted_shop(conn, domain, now)
                else:
                    await queries.lock_shop_exclusive(conn, shop["id"])
                    await privacy.delete_shop(conn, domain, shop["id"], now)
            self._shop_ids.pop(domain, None)
            self._redacted_at[domain] = max(self._redacted_at.get(domain, now), now)
            if shop is not None:
                self._metrics.privacy_requests.labels("shop_redacted").inc()
                logger.info("shop erased (shop/redact)", extra={"shop_id": shop["id"]})

    async def _apply_once(self, items: list[_Item]) -> BatchOutcome:
        """One transaction, retried at once when it conflicts with another replica's."""
        events = [item.event for item in items]
        for attempt in range(_CONFLICT_ATTEMPTS):
            try:
                async with self._pool.acquire() as conn:
                    async with conn.transaction():
                        began = time.perf_counter()
                        outcome = await apply_events(conn, events, self._rules, self._clock())
                        applied = time.perf_counter()
                    stage = self._metrics.stage_seconds
                    stage.labels("apply").observe(applied - began)
                    stage.labels("db_commit").observe(time.perf_counter() - applied)
                    if outcome.applied:
                        self._metrics.evaluation_seconds.observe(outcome.evaluation_seconds)
                    return outcome
            except RETRYABLE:
                if attempt == _CONFLICT_ATTEMPTS - 1:
                    raise
                logger.warning("batch conflicted with another transaction; retrying")
        raise AssertionError("unreachable")

    async def _apply(self, decoded: list[_Decoded], attempt: _Attempt) -> BatchOutcome:
        """Apply the batch; if it fails for a reason that is the events' (not a dependency's),
        apply the events one by one and dead-letter those that fail, so one poison event
        cannot stop the partition."""
        await self._erase_shops(decoded, attempt)
        items = await self._with_shop_ids(decoded, attempt, refresh=False)
        attempt.talking_to = "database"
        try:
            return await self._apply_once(items)
        except asyncpg.ForeignKeyViolationError:
            # A shop id is gone: the shop was deleted since it was cached, perhaps registered
            # again under a new id. Look the batch's shops up again and try once more.
            logger.info("a cached shop id is gone; looking the batch's shops up again")
            items = await self._with_shop_ids(decoded, attempt, refresh=True)
            attempt.talking_to = "database"
            try:
                return await self._apply_once(items)
            except Exception as exc:
                failure: Exception = exc
        except Exception as exc:
            failure = exc
        if infrastructure_fault(failure) is not None:
            raise failure
        logger.warning("batch failed; applying its events one by one", exc_info=failure)
        total = BatchOutcome()
        for item in items:
            try:
                outcome = await self._apply_once([item])
            except Exception as exc:
                if infrastructure_fault(exc) is not None:
                    raise
                logger.exception("event failed; dead-lettering it")
                await self._dead_letter(
                    item.record, Undecodable("processing_error", repr(exc)), attempt
                )
                attempt.talking_to = "database"
                continue
            total.applied += outcome.applied
            total.duplicates += outcome.duplicates
            total.changes += outcome.changes
            total.erased += outcome.erased
            total.redacted += outcome.redacted
            total.data_requests += outcome.data_requests
        return total

    async def _decode(self, records: list[ConsumerRecord], attempt: _Attempt) -> list[_Decoded]:
        """The records that decode; the others are dead-lettered with the reason (or, of an
        erased customer or shop, dropped: a dead letter would keep its data)."""
        decoded = []
        unreadable: list[tuple[ConsumerRecord, Undecodable]] = []
        for record in records:
            result = decode_event(record.value)
            if isinstance(result, Undecodable):
                unreadable.append((record, result))
            else:
                envelope, event = result
                decoded.append(_Decoded(record, envelope.shop, event))
        erased = await self._erased_owners(unreadable, attempt) if unreadable else set()
        for record, why in unreadable:
            if (why.shop, why.customer_id) in erased or (why.shop, None) in erased:
                self._metrics.events.labels("unknown", "erased").inc()
            else:
                await self._dead_letter(record, why, attempt)
        return decoded

    async def _erased_owners(
        self, unreadable: list[tuple[ConsumerRecord, Undecodable]], attempt: _Attempt
    ) -> set[tuple[str | None, int | None]]:
        """Of the unreadable records' owners, those erased: (shop, customer) erased by
        customers/redact, (shop, None) for a shop erased by shop/redact."""
        owners = {(w.shop, w.customer_id) for _, w in unreadable if w.shop is not None}
        domains = {shop for shop, _ in owners if shop is not None and _could_be_a_domain(shop)}
        if not domains:
            return set()
        attempt.talking_to = "database"
        async with self._pool.acquire() as conn:
            found = await queries.shop_ids(conn, domains)
            redacted = await privacy.redacted_shops_among(conn, domains - found.keys())
            keys = {(found[s], c) for s, c in owners if s in found and c is not None}
            customers, _ = await privacy.erased_among(conn, keys)
        by_id = {shop_id: domain for domain, shop_id in found.items()}
        erased: set[tuple[str | None, int | None]] = {(d, None) for d in redacted}
        erased |= {(by_id[shop_id], customer_id) for shop_id, customer_id in customers}
        return erased

    async def _with_shop_ids(
        self, decoded: list[_Decoded], attempt: _Attempt, *, refresh: bool
    ) -> list[_Item]:
        """The events with their shops' ids, from the cache or (`refresh`, or not cached) the
        database; events of shops that do not exist are dead-lettered as unknown_shop."""
        # A domain no shop could have (a stray producer's bytes) is never looked up: it would
        # fail the lookup for the whole batch.
        domains = {item.shop for item in decoded if _could_be_a_domain(item.shop)}
        wanted = domains if refresh else domains - self._shop_ids.keys()
        if wanted:
            attempt.talking_to = "database"
            async with self._pool.acquire() as conn:
                found = await queries.shop_ids(conn, wanted)
                redactions = await privacy.redactions_of(conn, wanted)
            for domain in wanted:
                self._shop_ids.pop(domain, None)
                self._redacted_at.pop(domain, None)
            self._shop_ids.update(found)
            self._redacted_at.update(redactions)
        items = []
        for item in decoded:
            shop_id = self._shop_ids.get(item.shop)
            redacted_at = self._redacted_at.get(item.shop)
            if redacted_at is not None and (
                shop_id is None or item.event.received_at < redacted_at
            ):
                # An erased shop's event (still in Kafka, or on a lagging partition after the
                # domain was registered again): dropped, not dead-lettered, which would keep
                # its customers' payloads.
                self._metrics.events.labels(topic_label(item.event.topic), "erased").inc()
            elif shop_id is None:
                await self._dead_letter(
                    item.record, Undecodable("unknown_shop", item.shop), attempt
                )
            else:
                items.append(_Item(item.record, ShopEvent(shop_id, item.event)))
        return items

    async def _dead_letter(
        self, record: ConsumerRecord, why: Undecodable, attempt: _Attempt
    ) -> None:
        """Send the original bytes with the reason; wait for the ack so nothing is lost.

        Once per batch: a retry of the batch does not send the same record again.
        """
        where = (record.topic, record.partition, record.offset)
        if where in attempt.dead_lettered:
            return
        attempt.talking_to = "broker"
        headers = [
            ("reason", why.reason.encode()),
            ("detail", why.detail.encode()[:1000]),
            ("source_topic", record.topic.encode()),
            ("source_partition", str(record.partition).encode()),
            ("source_offset", str(record.offset).encode()),
        ]
        value = record.value or b""
        if len(value) > DEAD_LETTER_MAX_VALUE_BYTES:
            # Over the producer's request limit with the headers: the reason and where the
            # record sits in its topic go with its first bytes.
            headers.append(("truncated_from", str(len(value)).encode()))
            value = value[:DEAD_LETTER_MAX_VALUE_BYTES]
        await self._producer.send_and_wait(
            self._settings.topic_dead_letter, value, key=record.key, headers=headers
        )
        attempt.dead_lettered.add(where)
        self._metrics.dead_letters.labels(why.reason).inc()
        self._metrics.events.labels("unknown", "dead_letter").inc()
        logger.warning(
            "dead-lettered a record",
            extra={"reason": why.reason, "detail": why.detail, "offset": record.offset},
        )

    def _observe_fetch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Per record: from its Kafka timestamp (ingest's send) to its batch being taken."""
        taken = time.time()
        fetch = self._metrics.stage_seconds.labels("fetch")
        for records in batch.values():
            for record in records:
                if record.timestamp is not None:
                    fetch.observe(max(0.0, taken - record.timestamp / 1000))

    def _observe_lag(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and records:
                lag = max(0, highwater - (records[-1].offset + 1))
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
