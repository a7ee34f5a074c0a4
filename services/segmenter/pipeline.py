"""One batch, one transaction: dedupe, apply events, evaluate segments, write state and outbox.

The caller owns the transaction; nothing here knows about Kafka.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import asyncpg

from services.common.shopify import Order, Product, Refund
from services.segmenter import store
from services.segmenter.derive import derive_facts
from services.segmenter.reducer import (
    Event,
    apply,
    apply_order,
    apply_refund,
    changes_customer,
)
from services.segmenter.rulebook import RuleBook, evaluate
from services.segmenter.state import CustomerState, OrderFact, ProductFact
from services.segmenter.store import Change, Key


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
    changes: list[Change] = field(default_factory=list)


def _first_occurrences(events: Sequence[ShopEvent]) -> tuple[list[ShopEvent], list[ShopEvent]]:
    seen: set[tuple[int, str, str]] = set()
    first: list[ShopEvent] = []
    repeated: list[ShopEvent] = []
    for item in events:
        event_key = (item.shop_id, item.event.topic, item.event.event_id)
        (repeated if event_key in seen else first).append(item)
        seen.add(event_key)
    return first, repeated


def _customer_key(item: ShopEvent, order_owner: dict[Key, int | None]) -> Key | None:
    payload = item.event.payload
    if isinstance(payload, Order):
        owner = payload.customer.id if payload.customer is not None else None
        owner = owner if owner is not None else order_owner.get((item.shop_id, payload.id))
    elif isinstance(payload, Refund):
        owner = order_owner.get((item.shop_id, payload.order_id))
    elif not changes_customer(item.event):
        return None
    else:
        owner = item.event.customer_id
    return (item.shop_id, owner) if owner is not None else None


async def apply_events(
    conn: asyncpg.Connection, events: Sequence[ShopEvent], rules: RuleBook, now: datetime
) -> BatchOutcome:
    """Apply a batch of events in the caller's transaction; return what happened."""
    fresh_keys = await store.mark_processed(
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
    await store.lock_shops_shared(conn, {item.shop_id for item in fresh})

    touched = await _apply_catalog(conn, fresh)
    order_keys = set()
    for item in fresh:
        payload = item.event.payload
        if isinstance(payload, Order):
            order_keys.add((item.shop_id, payload.id))
        elif isinstance(payload, Refund):
            order_keys.add((item.shop_id, payload.order_id))
    order_owner = await store.order_customers(conn, order_keys)

    cause: dict[Key, Event] = {}
    for item in fresh:
        key = _customer_key(item, order_owner)
        if key is not None:
            touched.add(key)
            cause[key] = item.event
    states = await store.lock_states(conn, touched)
    orders = await store.lock_orders(conn, order_keys)
    loose = {k: o for k, o in orders.items() if o.customer_id is None}

    for item in fresh:
        key = _customer_key(item, order_owner)
        payload = item.event.payload
        if isinstance(payload, Order | Refund):
            order_id = payload.id if isinstance(payload, Order) else payload.order_id
            order_key = (item.shop_id, order_id)
            if key is None:
                loose[order_key] = _apply_to_order(loose.get(order_key), payload)
                continue
            state = states[key]
            if order_id not in state.orders and order_key in orders:
                # A refund (or order) seen before the customer was known joins its customer.
                state = replace(state, orders={**state.orders, order_id: orders[order_key]})
                loose.pop(order_key, None)
            states[key] = apply(state, item.event)
        elif key is not None:
            states[key] = apply(states[key], item.event)

    await store.save_orders(conn, _orders_to_save(states.values(), loose.items(), order_keys))
    outcome.changes = await evaluate_customers(conn, states, rules, now, "event", cause)
    return outcome


def _apply_to_order(order: OrderFact | None, payload: Order | Refund) -> OrderFact:
    if isinstance(payload, Order):
        return apply_order(order, payload)
    return apply_refund(order, payload)


def _orders_to_save(
    states: Iterable[CustomerState],
    loose: Iterable[tuple[Key, OrderFact]],
    touched: set[Key],
) -> list[tuple[int, OrderFact]]:
    found = []
    for state in states:
        for order_id, order in state.orders.items():
            if (state.shop_id, order_id) in touched:
                found.append((state.shop_id, replace(order, customer_id=state.customer_id)))
    found.extend((key[0], order) for key, order in loose if key in touched)
    return found


async def _apply_catalog(conn: asyncpg.Connection, events: Sequence[ShopEvent]) -> set[Key]:
    """Save products/* to the catalog; return the customers whose orders name those products."""
    products: dict[Key, ProductFact] = {}
    for item in events:
        payload = item.event.payload
        if isinstance(payload, Product):
            products[(item.shop_id, payload.id)] = ProductFact(
                payload.id, payload.product_type, payload.vendor, payload.title, payload.updated_at
            )
    if not products:
        return set()
    await store.save_products(conn, ((k[0], p) for k, p in products.items()))
    by_shop: dict[int, list[int]] = {}
    for shop_id, product_id in products:
        by_shop.setdefault(shop_id, []).append(product_id)
    affected: set[Key] = set()
    for shop_id, product_ids in by_shop.items():
        affected |= await store.customers_with_products(conn, shop_id, product_ids)
    return affected


async def evaluate_customers(
    conn: asyncpg.Connection,
    states: dict[Key, CustomerState],
    rules: RuleBook,
    now: datetime,
    cause: str,
    cause_events: dict[Key, Event] | None = None,
) -> list[Change]:
    """Derive facts, evaluate every segment, save the customers and their membership changes."""
    if not states:
        return []
    product_keys = {
        (state.shop_id, product_id)
        for state in states.values()
        for order in state.orders.values()
        for product_id in order.product_ids
    }
    catalog = await store.load_catalog(conn, product_keys)
    segments = await rules.segments_of(conn, {shop_id for shop_id, _ in states})
    handles = {s.id: s for shop in segments.values() for s in shop}
    current = await store.memberships_of(conn, states)
    changes: list[Change] = []
    rows = []
    for key, state in states.items():
        facts, derived_until = derive_facts(state, catalog.get(state.shop_id, {}), now)
        if state.deleted:
            members: frozenset[int] = frozenset()
            next_eval_at = None
        else:
            evaluation = evaluate(segments[state.shop_id], facts, now)
            members = evaluation.segment_ids
            flips = [t for t in (derived_until, evaluation.next_flip_at) if t is not None]
            next_eval_at = min(flips) if flips else None
        rows.append((state, facts, now, next_eval_at))
        before = current.get(key, set())
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
    await store.save_customers(conn, rows)
    await store.write_changes(conn, changes)
    return changes
