"""The tagger's consumer: segment changes and Shopify's tags webhooks, in bounded batches.

One consumer group reads two topics:
- segflow.segment-changes: each change marks its customer for a look at their tags
  (`tag_work`); the reconciler reads the memberships when it takes the mark, so duplicates and
  out-of-order changes are harmless (tags are a function of the memberships, not of the
  stream). Each change also enrols or exits the customer in the journeys of its segment
  (journeys_store.apply_segment_changes; the stored seq makes replays harmless);
- segflow.events: Shopify's tags webhooks (`customer.tags_added`/`_removed`, and
  `customers/update` carrying the whole tags list on API versions before 2025-01) confirm the
  ledger or record a manual removal (tags.on_echo), and never start segment work;
  orders/create counts journey conversions and goal exits, customers/redact erases the
  customer's journey data.

Offsets are committed after the database transaction; a failing database or broker retries
the batch with backoff (dedupe is not needed: marks, echo confirmations, enrolments (by seq)
and conversions (by order) are idempotent).
"""

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from prometheus_client import Gauge

from services.common import privacy
from services.common.backoff import Backoff
from services.common.envelope import as_utc, decode_envelope
from services.common.metrics import forget_partitions
from services.common.settings import Settings
from services.common.shopify import (
    Customer,
    CustomerRedact,
    CustomerTagsChanged,
    Order,
    parse_payload,
    tag_key,
)
from services.segmenter.runtime.faults import infrastructure_fault
from services.segmenter.runtime.health import ComponentHealth
from services.tagger import journeys_store, storage
from services.tagger.journeys.enrolment import OrderPlaced, SegmentChange
from services.tagger.metrics import TaggerMetrics
from services.tagger.tags import on_echo

logger = logging.getLogger(__name__)

# Changes of bulk work go to the bulk lane (the outbox's lanes name the same causes).
BULK_CAUSES = frozenset({"backfill", "import", "segment_deleted"})
TAG_TOPICS = frozenset({"customer.tags_added", "customer.tags_removed", "customers/update"})
# Orders count for journeys' conversions and goal exits.
ORDER_TOPIC = "orders/create"
# Cheap byte tests before an envelope is decoded: most events are orders.
_TAG_TOPIC_BYTES = tuple(f'"topic":"{t}"'.encode() for t in TAG_TOPICS)
_ORDER_TOPIC_BYTES = f'"topic":"{ORDER_TOPIC}"'.encode()
_REDACT_TOPIC_BYTES = b'"topic":"customers/redact"'

SHOP_IDS = "SELECT domain, id FROM shops WHERE domain = ANY($1::text[])"
RESPECTS = "SELECT shop_id, respect_manual_removals FROM shop_connections"


@dataclass(frozen=True)
class Echo:
    """What one tags webhook says about a customer's tags at a moment."""

    shop: str
    customer_id: int
    occurred_at: datetime
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    # customers/update: the whole list (added/removed are then derived against the ledger).
    whole: tuple[str, ...] | None = None


def change_mark(value: bytes) -> tuple[str, int, bool] | None:
    """(shop domain, customer id, bulk) of a segment change, or None if it is not one."""
    try:
        change = orjson.loads(value)
        return str(change["shop"]), int(change["customer_id"]), change["cause"] in BULK_CAUSES
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def segment_change(value: bytes) -> tuple[str, SegmentChange] | None:
    """(shop domain, the change as journeys read it) of a segment change, or None."""
    try:
        change = orjson.loads(value)
        changed_at = datetime.fromisoformat(change["changed_at"])
        if changed_at.utcoffset() is None:
            return None
        return str(change["shop"]), SegmentChange(
            change_id=str(change["change_id"]),
            seq=int(change["seq"]),
            customer_id=int(change["customer_id"]),
            segment_handle=str(change["segment"]["handle"]),
            change="exited" if change["change"] == "exited" else "entered",
            cause=str(change["cause"]),
            changed_at=as_utc(changed_at),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def order_placed(value: bytes) -> tuple[str, OrderPlaced] | None:
    """(shop domain, the order as journeys read it) of an orders/create event, or None."""
    if _ORDER_TOPIC_BYTES not in value:
        return None
    try:
        envelope = decode_envelope(value)
        order = parse_payload(envelope.topic, envelope.payload)
    except ValueError:
        return None
    if envelope.topic != ORDER_TOPIC or not isinstance(order, Order):
        return None
    if order.customer is None or order.total_price is None:
        return None
    placed_at = order.created_at or envelope.occurred_at
    return envelope.shop, OrderPlaced(
        order_id=order.id,
        customer_id=order.customer.id,
        placed_at=as_utc(placed_at),
        total=order.total_price,
    )


@dataclass
class Redaction:
    """A customers/redact request as the tagger reads it; the email and the erased sends'
    Message-IDs find kept .eml files."""

    shop: str
    customer_id: int
    email: str | None = None
    message_ids: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"Redaction(shop={self.shop!r}, customer_id={self.customer_id})"


def redacted_customer(value: bytes) -> Redaction | None:
    """The customers/redact request in an events-topic record, or None."""
    if _REDACT_TOPIC_BYTES not in value:
        return None
    try:
        envelope = decode_envelope(value)
        request = parse_payload(envelope.topic, envelope.payload)
    except ValueError:
        return None
    if not isinstance(request, CustomerRedact) or request.customer is None:
        return None
    return Redaction(envelope.shop, request.customer.id, request.customer.email)


def tags_echo(value: bytes) -> Echo | None:
    """The tags webhook in an events-topic record, or None for every other event."""
    if not any(marker in value for marker in _TAG_TOPIC_BYTES):
        return None
    try:
        envelope = decode_envelope(value)
        payload = parse_payload(envelope.topic, envelope.payload)
    except ValueError:
        return None
    at = envelope.occurred_at
    if isinstance(payload, CustomerTagsChanged) and payload.customer_id is not None:
        tags = tuple(payload.tags or ())
        moment = payload.occurred_at or at
        if envelope.topic == "customer.tags_added":
            return Echo(envelope.shop, payload.customer_id, moment, added=tags)
        return Echo(envelope.shop, payload.customer_id, moment, removed=tags)
    if isinstance(payload, Customer) and payload.tags is not None:
        return Echo(envelope.shop, payload.id, payload.updated_at or at, whole=tuple(payload.tags))
    return None


def _split_whole(echo: Echo, ledger: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Added and removed tags of a whole-list echo, as far as the ledger cares."""
    present = {tag_key(t) for t in echo.whole or ()}
    added = [key for key in ledger if key in present]
    removed = [key for key in ledger if key not in present]
    return added, removed


class ForgetLagOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions that move to another member take their lag series with them."""

    def __init__(self, lag: Gauge) -> None:
        self._lag = lag

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        forget_partitions(self._lag, revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class TaggerWorker:
    """Consumes changes and echoes; offsets committed only after the database commit."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        consumer: AIOKafkaConsumer,
        metrics: TaggerMetrics,
        health: ComponentHealth,
        poke: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        erase_mail: Callable[[str | None, Sequence[str]], int] | None = None,
    ) -> None:
        # erase_mail: the local mailbox's (development), deleting kept mail to an address.
        self._erase_mail = erase_mail
        self._settings = settings
        self._pool = pool
        self._consumer = consumer
        self._metrics = metrics
        self._health = health
        self._poke = poke
        self._clock = clock
        self._backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
        self.listener = ForgetLagOnRevoke(metrics.consumer_lag)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished or let go first."""
        self._health.running()
        while not stop.is_set():
            batch = await self._consumer.getmany(timeout_ms=200, max_records=500)
            if not any(batch.values()):
                continue
            failures = 0
            while True:
                try:
                    await self.process(batch)
                except Exception as exc:
                    fault = infrastructure_fault(exc)
                    if fault is None:
                        raise
                    failures += 1
                    self._health.retrying(fault, failures)
                    logger.warning("tagger batch failed; retrying", extra={"reason": fault.reason})
                    try:
                        await asyncio.wait_for(stop.wait(), self._backoff.delay(failures))
                        return  # stopping: the uncommitted batch is replayed by the next owner
                    except TimeoutError:
                        continue
                break
            if failures:
                self._health.running()

    async def process(self, batch: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        """Mark the changes' customers, apply the echoes, then commit the offsets."""
        marks: list[tuple[str, int, bool]] = []
        changes: list[tuple[str, SegmentChange]] = []
        orders: list[tuple[str, OrderPlaced]] = []
        redactions: list[Redaction] = []
        echoes: list[Echo] = []
        for tp, records in batch.items():
            for record in records:
                if record.value is None:
                    continue
                if tp.topic == self._settings.topic_segment_changes:
                    mark = change_mark(record.value)
                    if mark is None:
                        self._metrics.changes.labels("unreadable").inc()
                        continue
                    marks.append(mark)
                    if (parsed := segment_change(record.value)) is not None:
                        changes.append(parsed)
                    self._metrics.changes.labels("bulk" if mark[2] else "live").inc()
                elif (echo := tags_echo(record.value)) is not None:
                    echoes.append(echo)
                elif (order := order_placed(record.value)) is not None:
                    orders.append(order)
                elif (redacted := redacted_customer(record.value)) is not None:
                    redactions.append(redacted)
        if marks or echoes or orders or redactions:
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    await self._apply(conn, marks, echoes, changes, orders, redactions)
        self._erase_kept_mail(redactions)
        await self._consumer.commit(
            {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        )
        self._observe_lag(batch)
        if marks or echoes:
            self._poke()

    def _observe_lag(self, batch: Mapping[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, records in batch.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None and records:
                lag = max(0, highwater - (records[-1].offset + 1))
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def _apply(
        self,
        conn: asyncpg.Connection,
        marks: list[tuple[str, int, bool]],
        echoes: list[Echo],
        changes: list[tuple[str, SegmentChange]],
        orders: list[tuple[str, OrderPlaced]],
        redactions: list[Redaction],
    ) -> None:
        domains = {m[0] for m in marks} | {e.shop for e in echoes}
        domains |= {o[0] for o in orders} | {r.shop for r in redactions}
        shop_ids = {r["domain"]: r["id"] for r in await conn.fetch(SHOP_IDS, sorted(domains))}
        erased = await self._erased(conn, shop_ids, marks, echoes, changes, orders, redactions)
        if erased:
            # Nothing of an erased customer is written again: not by a change published
            # before its erasure, nor by an echo or an order still in Kafka.
            marks = [m for m in marks if (shop_ids.get(m[0]), m[1]) not in erased]
            echoes = [e for e in echoes if (shop_ids.get(e.shop), e.customer_id) not in erased]
            changes = [c for c in changes if (shop_ids.get(c[0]), c[1].customer_id) not in erased]
            orders = [o for o in orders if (shop_ids.get(o[0]), o[1].customer_id) not in erased]
        work: dict[storage.Key, bool] = {}
        for domain, customer_id, bulk in marks:
            if (shop_id := shop_ids.get(domain)) is not None:
                key = (shop_id, customer_id)
                work[key] = work.get(key, True) and bulk
        if echoes:
            await self._apply_echoes(conn, echoes, shop_ids, work)
        await storage.mark_tag_work(conn, work)
        await self._enrol(conn, changes, shop_ids)
        now = self._clock()
        for domain, order in orders:
            if (shop_id := shop_ids.get(domain)) is not None:
                await journeys_store.apply_order(conn, shop_id, order, now)
        for redaction in redactions:
            if (shop_id := shop_ids.get(redaction.shop)) is not None:
                redaction.message_ids = await journeys_store.sent_message_ids(
                    conn, shop_id, redaction.customer_id
                )
                await journeys_store.redact_customer(conn, shop_id, redaction.customer_id)
                await storage.erase_customer(conn, shop_id, redaction.customer_id)
                key = (shop_id, redaction.customer_id)
                await privacy.remember_erased(conn, [key], [], self._clock())
                logger.info(
                    "customer's tags and journeys erased (customers/redact)",
                    extra={"shop_id": shop_id, "customer_id": redaction.customer_id},
                )

    async def _erased(
        self,
        conn: asyncpg.Connection,
        shop_ids: Mapping[str, int],
        marks: list[tuple[str, int, bool]],
        echoes: list[Echo],
        changes: list[tuple[str, SegmentChange]],
        orders: list[tuple[str, OrderPlaced]],
        redactions: list[Redaction],
    ) -> set[storage.Key]:
        """The batch's customers erased by customers/redact, before or in this batch.

        Locked first (this batch's redactions exclusively): another replica's erasure of one of
        them has committed by then and is seen, or waits for this batch and erases its work.
        """
        named = [(m[0], m[1]) for m in marks] + [(e.shop, e.customer_id) for e in echoes]
        named += [(c[0], c[1].customer_id) for c in changes]
        named += [(o[0], o[1].customer_id) for o in orders]
        named += [(r.shop, r.customer_id) for r in redactions]
        keys = {(shop_ids[d], c) for d, c in named if d in shop_ids}
        if not keys:
            return set()
        now_erased = {(shop_ids[r.shop], r.customer_id) for r in redactions if r.shop in shop_ids}
        await privacy.lock_customers(conn, keys, erasing=now_erased)
        customers, _ = await privacy.erased_among(conn, keys)
        return customers | now_erased

    def _erase_kept_mail(self, redactions: Iterable[Redaction]) -> None:
        """The local mailbox's copies of mail to erased customers (development only). After
        the commit: a crash before it replays the request, and this runs again."""
        if self._erase_mail is None:
            return
        for redaction in redactions:
            if redaction.email or redaction.message_ids:
                erased = self._erase_mail(redaction.email, redaction.message_ids)
                logger.info(
                    "kept mail of an erased customer deleted",
                    extra={"customer_id": redaction.customer_id, "messages": erased},
                )

    async def _enrol(
        self,
        conn: asyncpg.Connection,
        changes: Iterable[tuple[str, SegmentChange]],
        shop_ids: Mapping[str, int],
    ) -> None:
        """Journeys' entries and exits from the changes, in the batch's transaction."""
        by_shop: dict[int, list[SegmentChange]] = {}
        for domain, change in changes:
            if (shop_id := shop_ids.get(domain)) is not None:
                by_shop.setdefault(shop_id, []).append(change)
        now = self._clock()
        for shop_id, shop_changes in by_shop.items():
            await journeys_store.apply_segment_changes(conn, shop_id, shop_changes, now)

    async def _apply_echoes(
        self,
        conn: asyncpg.Connection,
        echoes: Iterable[Echo],
        shop_ids: Mapping[str, int],
        work: dict[storage.Key, bool],
    ) -> None:
        respects = {r["shop_id"]: r["respect_manual_removals"] for r in await conn.fetch(RESPECTS)}
        known = [(shop_ids[e.shop], e.customer_id, e) for e in echoes if e.shop in shop_ids]
        ledgers = await storage.ledgers(conn, [(s, c) for s, c, _ in known])
        for shop_id, customer_id, echo in known:
            key = (shop_id, customer_id)
            ledger = ledgers.get(key, {})
            if not ledger:
                continue
            added, removed = (
                _split_whole(echo, ledger) if echo.whole is not None else (echo.added, echo.removed)
            )
            entries, recheck = on_echo(
                ledger, added, removed, echo.occurred_at, respects.get(shop_id, True)
            )
            if entries:
                await storage.write_ledger(conn, {key: entries})
                for entry in entries.values():
                    state = "dropped" if entry is None else entry.state
                    self._metrics.echoes.labels(state).inc()
                ledgers[key] = {k: v for k, v in {**ledger, **entries}.items() if v is not None}
            if recheck:
                work[key] = False
