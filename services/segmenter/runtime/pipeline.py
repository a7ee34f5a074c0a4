"""One batch, one transaction: dedupe, apply events, evaluate segments, write state and outbox.

The caller owns the transaction; nothing here knows about Kafka.
"""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta

import asyncpg

from services.common import privacy
from services.common.shopify import CustomerDataRequest, CustomerRedact, Order, Product, Refund
from services.segmenter.domain.aggregates import (
    Aggregates,
    Contribution,
    aged,
    basis_of,
    build,
    contribution,
    covers,
    moved_from,
    settle_orders,
)
from services.segmenter.domain.derive import facts_from
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.reducer import (
    Event,
    apply,
    apply_to_owner,
    changes_customer,
)
from services.segmenter.domain.state import CustomerState, OrderFact, ProductFact
from services.segmenter.runtime.segment_cache import RuleBook, evaluate
from services.segmenter.storage import queries
from services.segmenter.storage.queries import Change, Key, LockedCustomer

# How long the products an import changed wait for the import to evaluate their buyers before
# the scheduler does (the import extends it while it runs).
FANOUT_HOLD = timedelta(hours=1)


@dataclass(frozen=True)
class ShopEvent:
    """An event and the id of the shop it belongs to."""

    shop_id: int
    event: Event


@dataclass
class BatchOutcome:
    """What a batch did: events applied (new), duplicates skipped, and membership changes."""

    applied: list[ShopEvent] = field(default_factory=list)
    duplicates: list[ShopEvent] = field(default_factory=list)
    # Of `applied`: events of customers or orders erased by customers/redact, dropped.
    erased: list[ShopEvent] = field(default_factory=list)
    # Customers erased by this batch's customers/redact and data requests recorded, by shop.
    redacted: list[Key] = field(default_factory=list)
    data_requests: list[Key] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    # With `defer_fanout`: by shop, changed products that already have buyers.
    changed_products: dict[int, list[int]] = field(default_factory=dict)
    # Time spent evaluating segment rules (CPU only), bounded as README "Bounded evaluation".
    evaluation_seconds: float = 0.0


@dataclass
class EvaluationTiming:
    """Seconds spent evaluating rules, summed over the calls given it."""

    seconds: float = 0.0


def _first_occurrences(events: Sequence[ShopEvent]) -> tuple[list[ShopEvent], list[ShopEvent]]:
    seen: set[tuple[int, str, str]] = set()
    first: list[ShopEvent] = []
    repeated: list[ShopEvent] = []
    for item in events:
        event_key = (item.shop_id, item.event.topic, item.event.event_id)
        (repeated if event_key in seen else first).append(item)
        seen.add(event_key)
    return first, repeated


@dataclass(frozen=True)
class Redaction:
    """A customers/redact request: the customer and the orders Shopify names."""

    shop_id: int
    customer_id: int
    order_ids: tuple[int, ...]
    event: Event


def _redaction(item: ShopEvent) -> Redaction | None:
    payload = item.event.payload
    if not isinstance(payload, CustomerRedact) or payload.customer is None:
        return None
    return Redaction(item.shop_id, payload.customer.id, tuple(payload.orders_to_redact), item.event)


def _requested_customer(item: ShopEvent) -> int | None:
    payload = item.event.payload
    if isinstance(payload, CustomerDataRequest) and payload.customer is not None:
        return payload.customer.id
    return None


class StaleOwnershipError(Exception):
    """An order changed hands between reading it and locking it; the batch is retried."""


def _order_key(item: ShopEvent) -> Key | None:
    payload = item.event.payload
    if isinstance(payload, Order):
        return (item.shop_id, payload.id)
    if isinstance(payload, Refund):
        return (item.shop_id, payload.order_id)
    return None


def _customer_keys(item: ShopEvent, order_owner: Mapping[Key, int | None]) -> list[Key]:
    """The customers an event may change: for orders and refunds, the order's known owner
    and, for an order naming a customer, that customer too (an order can change hands)."""
    payload = item.event.payload
    order_key = _order_key(item)
    if order_key is not None:
        owners = {order_owner.get(order_key)}
        if isinstance(payload, Order) and payload.customer is not None:
            owners.add(payload.customer.id)
        return [(item.shop_id, owner) for owner in owners if owner is not None]
    if not changes_customer(item.event) or item.event.customer_id is None:
        return []
    return [(item.shop_id, item.event.customer_id)]


async def apply_events(
    conn: asyncpg.Connection,
    events: Sequence[ShopEvent],
    rules: RuleBook,
    now: datetime,
    cause: str = "event",
    defer_fanout: bool = False,
) -> BatchOutcome:
    """Apply a batch of events in the caller's transaction; return what happened.

    `cause` names the changes in the outbox: "event" for live events, "import" for an
    import (published after live changes, and told apart by the tagger). With
    `defer_fanout`, products whose type or vendor changed are returned rather than queued
    for the scheduler, so the caller evaluates their buyers under its own cause.
    """
    fresh_keys = await queries.mark_processed(
        conn, [(e.shop_id, e.event.topic, e.event.event_id) for e in events]
    )
    first, repeated = _first_occurrences(events)
    outcome = BatchOutcome(duplicates=repeated)
    fresh: list[ShopEvent] = []
    for item in first:
        event_key = (item.shop_id, item.event.topic, item.event.event_id)
        (fresh if event_key in fresh_keys else outcome.duplicates).append(item)
    outcome.applied = fresh
    if not fresh:
        return outcome
    await queries.lock_shops_shared(conn, {item.shop_id for item in fresh})
    changed = await _apply_catalog(conn, fresh)
    if defer_fanout:
        for shop_id, product_ids in changed.items():
            if bought := await queries.products_with_buyers(conn, shop_id, product_ids):
                outcome.changed_products[shop_id] = bought
                # Durable too, so a stopped import loses none of them.
                held_until = datetime.now(UTC) + FANOUT_HOLD
                await queries.queue_fanout(conn, shop_id, bought, held_until)
    else:
        for shop_id, product_ids in changed.items():
            await queries.queue_fanout(conn, shop_id, product_ids)

    order_keys = {key for item in fresh if (key := _order_key(item)) is not None}
    order_owner = await queries.order_customers(conn, order_keys)
    redactions = [r for item in fresh if (r := _redaction(item)) is not None]
    cause_events: dict[Key, Event] = {}
    for item in fresh:
        for key in _customer_keys(item, order_owner):
            cause_events[key] = item.event
    redacted = {(r.shop_id, r.customer_id): r for r in redactions}
    for key, redaction in redacted.items():
        # Locked like any customer of the batch (in key order), then erased below.
        cause_events.setdefault(key, redaction.event)
    # Customers first, then orders: the lock order every writer follows.
    locked = await queries.lock_states(conn, cause_events)
    # After the row locks: an erasure that held one of them has committed, and is seen now.
    fresh, erased = await _drop_erased(conn, fresh, order_owner, redactions, outcome)
    if gone := erased.keys() & locked.keys() - redacted.keys():
        # Created by lock_states for an event now dropped: an erased customer has no row.
        await privacy.forget_customers(conn, gone)
        locked = {key: value for key, value in locked.items() if key not in gone}
    order_keys = {key for item in fresh if (key := _order_key(item)) is not None}
    orders, stored_parts = await queries.lock_orders(conn, order_keys)
    if any(order.customer_id != order_owner.get(key) for key, order in orders.items()):
        raise StaleOwnershipError("an order changed hands while the batch was read")

    # The states hold only the orders this batch touches; the rest are in the aggregates.
    states = {key: customer.state for key, customer in locked.items()}
    for item in fresh:
        order_key = _order_key(item)
        if order_key is None:
            keys = _customer_keys(item, order_owner)
            if keys:
                states[keys[0]] = apply(states[keys[0]], item.event)
            continue
        orders[order_key] = apply_to_owner(states, item.shop_id, orders[order_key], item.event)

    aggregates, parts = await _settle_orders(
        conn, locked, states, orders, stored_parts, order_owner
    )
    await queries.save_orders(conn, [(key[0], orders[key], parts[key]) for key in sorted(orders)])
    await queries.save_contributions(
        conn, [(key[0], key[1], part) for key, part in sorted(parts.items()) if key not in orders]
    )
    customers = {
        key: replace(customer, state=states[key], aggregates=aggregates[key])
        for key, customer in locked.items()
        if key not in redacted
    }
    timing = EvaluationTiming()
    outcome.changes = await evaluate_customers(
        conn, customers, rules, now, cause, cause_events, timing=timing
    )
    outcome.evaluation_seconds = timing.seconds
    await _erase(conn, list(redacted.values()), now, outcome)
    await _record_data_requests(conn, fresh, now, outcome)
    return outcome


async def _drop_erased(
    conn: asyncpg.Connection,
    fresh: list[ShopEvent],
    order_owner: Mapping[Key, int | None],
    redactions: Sequence[Redaction],
    outcome: BatchOutcome,
) -> tuple[list[ShopEvent], dict[Key, None]]:
    """The events that name no erased customer or order (erased before, or by this batch), and
    the erased customers named.

    Events of an erased customer still in Kafka, or sent later, would bring its data back.
    Called with the batch's customers locked, so an erasure that committed meanwhile is seen.
    """
    wanted_customers = {(r.shop_id, r.customer_id) for r in redactions}
    wanted_orders = {(r.shop_id, o) for r in redactions for o in r.order_ids}
    for item in fresh:
        wanted_customers.update(_customer_keys(item, order_owner))
        if (requested := _requested_customer(item)) is not None:
            wanted_customers.add((item.shop_id, requested))
        if (order_key := _order_key(item)) is not None:
            wanted_orders.add(order_key)
    customers, orders = await privacy.erased_among(conn, wanted_customers, wanted_orders)
    customers |= {(r.shop_id, r.customer_id) for r in redactions}
    orders |= {(r.shop_id, o) for r in redactions for o in r.order_ids}
    if not customers and not orders:
        return fresh, {}
    kept = []
    for item in fresh:
        keys = set(_customer_keys(item, order_owner))
        if (requested := _requested_customer(item)) is not None:
            keys.add((item.shop_id, requested))
        if keys & customers or _order_key(item) in orders:
            outcome.erased.append(item)
        else:
            kept.append(item)
    return kept, dict.fromkeys(customers)


async def _erase(
    conn: asyncpg.Connection, redactions: Sequence[Redaction], now: datetime, outcome: BatchOutcome
) -> None:
    """customers/redact: delete the customers' rows (locked by this batch) and remember them."""
    for redaction in redactions:
        key = (redaction.shop_id, redaction.customer_id)
        erased_orders, rows = await privacy.erase_segmenter_rows(
            conn, redaction.shop_id, redaction.customer_id, redaction.order_ids
        )
        order_keys = {(redaction.shop_id, o) for o in (*redaction.order_ids, *erased_orders)}
        await privacy.remember_erased(conn, [key], order_keys, now)
        await privacy.log_request(conn, "customer_redacted", redaction.shop_id, rows, now)
        outcome.redacted.append(key)


async def _record_data_requests(
    conn: asyncpg.Connection, events: Sequence[ShopEvent], now: datetime, outcome: BatchOutcome
) -> None:
    for item in events:
        customer_id = _requested_customer(item)
        if customer_id is None:
            continue
        payload = item.event.payload
        assert isinstance(payload, CustomerDataRequest)
        request_id = payload.data_request.id if payload.data_request is not None else None
        await privacy.record_data_request(conn, item.shop_id, customer_id, request_id, now)
        outcome.data_requests.append((item.shop_id, customer_id))


async def _settle_orders(
    conn: asyncpg.Connection,
    locked: Mapping[Key, LockedCustomer],
    states: Mapping[Key, CustomerState],
    orders: Mapping[Key, OrderFact],
    stored_parts: Mapping[Key, Contribution | None],
    order_owner: Mapping[Key, int | None],
) -> tuple[dict[Key, Aggregates | None], dict[Key, Contribution]]:
    """The touched orders' new contributions, settled into their owners' aggregates (with
    the orders a moved basis splits anew)."""
    catalog = await queries.load_catalog(
        conn, {(key[0], p) for key, order in orders.items() for p in order.product_ids}, hold=True
    )
    bases = {key: basis_of(state) for key, state in states.items()}
    moments: dict[Key, datetime] = {}
    for key, customer in locked.items():
        built = customer.aggregates
        if built is not None and built.basis != bases[key]:
            if (moment := moved_from(built.basis, bases[key])) is not None:
                moments[key] = moment
    crossing = await queries.orders_crossing(conn, moments) if moments else {}
    return settle_orders(
        {key: customer.aggregates for key, customer in locked.items()},
        bases,
        orders,
        stored_parts,
        order_owner,
        catalog,
        {key: crossing.get(key, {}) for key in moments},
    )


async def _apply_catalog(
    conn: asyncpg.Connection, events: Sequence[ShopEvent]
) -> dict[int, list[int]]:
    """Save products/* to the catalog (newest version wins, within the batch too); return,
    by shop, the products whose type or vendor really changed.

    Their buyers are not touched here: the caller queues the products for the scheduler,
    which makes the buyers due in a transaction of its own. Locking them here would take
    customers outside this batch's key order (a deadlock with another batch) and let a
    popular product blow up one batch. This runs before the batch's customers are locked, so
    a wait on a queued row never holds a customer.
    """
    products: dict[Key, ProductFact] = {}
    for item in events:
        payload = item.event.payload
        if not isinstance(payload, Product):
            continue
        key = (item.shop_id, payload.id)
        fact = ProductFact(
            payload.id, payload.product_type, payload.vendor, payload.title, payload.updated_at
        )
        known = products.get(key)
        if known is None or _newer_or_same(fact.updated_at, known.updated_at):
            products[key] = fact
    if not products:
        return {}
    return await queries.save_products(conn, ((k[0], p) for k, p in products.items()))


def _newer_or_same(candidate: datetime | None, known: datetime | None) -> bool:
    return candidate is None or known is None or candidate >= known


async def evaluate_customers(
    conn: asyncpg.Connection,
    customers: Mapping[Key, LockedCustomer],
    rules: RuleBook,
    now: datetime,
    cause: str,
    cause_events: dict[Key, Event] | None = None,
    rebuild: bool = False,
    timing: EvaluationTiming | None = None,
) -> list[Change]:
    """Derive facts from the aggregates (building those missing from the stored orders, or
    all with `rebuild`), evaluate the segments whose inputs changed, save the customers and
    their membership changes (adding the evaluation's time to `timing`)."""
    if not customers:
        return []
    aggregates = await _aggregates(conn, customers, now, rebuild)
    segments = await rules.segments_of(conn, {shop_id for shop_id, _ in customers})
    handles = {s.id: s for shop in segments.values() for s in shop}
    current = await queries.memberships_of(conn, customers)
    changes: list[Change] = []
    rows = []
    began = time.perf_counter()
    for key, customer in customers.items():
        state = customer.state
        facts, derived_until = facts_from(state, aggregates[key], now)
        # Memberships of a segment being deleted are its deletion's to end, not this batch's.
        before = current.get(key, set()) & handles.keys()
        if state.deleted:
            members: frozenset[int] = frozenset()
            next_eval_at = None
        else:
            # Never evaluated: the stored facts are the defaults, not an evaluation's input.
            changed = None if customer.evaluated_at is None else _changed(customer.facts, facts)
            evaluation = evaluate(segments[state.shop_id], facts, now, before, changed)
            members = evaluation.segment_ids
            flips = [t for t in (derived_until, evaluation.next_flip_at) if t is not None]
            next_eval_at = min(flips) if flips else None
        rows.append((state, facts, now, next_eval_at))
        event = (cause_events or {}).get(key)
        for segment_id, change in [(s, "entered") for s in sorted(members - before)] + [
            (s, "exited") for s in sorted(before - members)
        ]:
            segment = handles[segment_id]
            changes.append(
                Change(
                    shop_id=state.shop_id,
                    customer_id=state.customer_id,
                    segment_id=segment_id,
                    segment_handle=segment.handle,
                    segment_version=segment.version,
                    change=change,
                    cause=cause,
                    cause_event_id=event.event_id if event else None,
                    received_at=event.received_at if event else None,
                    changed_at=now,
                )
            )
    if timing is not None:
        timing.seconds += time.perf_counter() - began
    await queries.save_customers(conn, rows, aggregates)
    await queries.write_changes(conn, changes)
    return changes


_FACT_NAMES = tuple(f.name for f in fields(CustomerFacts))


def _changed(before: CustomerFacts, after: CustomerFacts) -> set[str]:
    """The facts that differ between two evaluations."""
    return {name for name in _FACT_NAMES if getattr(before, name) != getattr(after, name)}


async def _aggregates(
    conn: asyncpg.Connection, customers: Mapping[Key, LockedCustomer], now: datetime, rebuild: bool
) -> dict[Key, Aggregates]:
    """Every customer's aggregates as of `now`: kept ones aged, the others (never built, made
    stale, not reaching back to `now`, or all with `rebuild`) built from the stored orders,
    whose contributions are written with them."""
    kept: dict[Key, Aggregates] = {}
    missing: list[Key] = []
    for key, customer in customers.items():
        built = customer.aggregates
        if rebuild or built is None or not covers(built, now):
            missing.append(key)
        else:
            kept[key] = aged(built, now)
    if not missing:
        return kept
    stored = await queries.orders_of_customers(conn, missing)
    catalog = await queries.load_catalog(
        conn,
        {
            (shop_id, product_id)
            for (shop_id, _), orders in stored.items()
            for order in orders.values()
            for product_id in order.product_ids
        },
    )
    parts: list[tuple[int, int, Contribution]] = []
    for key in missing:
        shop_id = key[0]
        state = replace(customers[key].state, orders=stored.get(key, {}))
        basis = basis_of(state)
        built_parts = {
            order_id: contribution(order, basis, catalog.get(shop_id, {}))
            for order_id, order in state.orders.items()
        }
        kept[key] = build(built_parts, basis, now)
        parts.extend((shop_id, order_id, part) for order_id, part in built_parts.items())
    await queries.save_contributions(conn, parts)
    return kept
