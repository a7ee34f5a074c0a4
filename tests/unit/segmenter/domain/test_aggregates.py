"""Aggregates kept incrementally, batch by batch as the pipeline keeps them, equal the facts
recomputed from every stored order after random histories."""

from dataclasses import replace
from decimal import Decimal

from hypothesis import HealthCheck, given, settings

from services.common.shopify import Order, Refund
from services.segmenter.domain.aggregates import (
    NOTHING,
    Aggregates,
    Basis,
    Contribution,
    aged,
    basis_of,
    build,
    contribution,
    covers,
    moved_from,
    replace_contribution,
    settle_orders,
)
from services.segmenter.domain.derive import derive_facts, facts_from
from services.segmenter.domain.reducer import Key, apply, apply_to_owner, changes_customer
from services.segmenter.domain.state import CustomerState, OrderFact
from tests.unit.segmenter.events import NOW, SHOP, at
from tests.unit.segmenter.histories import CATALOG, CUSTOMERS, Batch, histories


class Store:
    """What PostgreSQL holds between batches: customers without orders, their aggregates,
    and the orders with what each contributed."""

    def __init__(self) -> None:
        self.customers = {(SHOP, c): CustomerState(SHOP, c) for c in CUSTOMERS}
        self.aggregates: dict[Key, Aggregates | None] = {k: Aggregates() for k in self.customers}
        self.orders: dict[Key, OrderFact] = {}
        self.parts: dict[Key, Contribution | None] = {}
        self.processed: set[tuple[str, str]] = set()
        self.rebuilds = 0

    def owned(self, customer: Key) -> dict[int, OrderFact]:
        return {
            order_id: order
            for (shop_id, order_id), order in self.orders.items()
            if shop_id == customer[0] and order.customer_id == customer[1]
        }

    def crossing(
        self, bases: dict[Key, Basis]
    ) -> dict[Key, dict[int, tuple[OrderFact, Contribution | None]]]:
        """What `queries.orders_crossing` reads: for owners whose basis moved, their orders
        placed or refunded after the moment it moved from."""
        crossing: dict[Key, dict[int, tuple[OrderFact, Contribution | None]]] = {}
        for key, built in self.aggregates.items():
            if built is None or built.basis == bases[key]:
                continue
            moment = moved_from(built.basis, bases[key])
            if moment is None:
                continue
            crossing[key] = {
                order_id: (order, self.parts.get((SHOP, order_id)))
                for order_id, order in self.owned(key).items()
                if (order.placed_at is not None and order.placed_at > moment)
                or any(r.at is not None and r.at > moment for r in order.refunds.values())
            }
        return crossing

    def apply_batch(self, batch: Batch) -> None:
        """The pipeline's batch, without the database: dedupe, apply, settle, rebuild."""
        fresh = []
        for event in batch.events:
            if (event.topic, event.event_id) not in self.processed:
                self.processed.add((event.topic, event.event_id))
                fresh.append(event)
        states = dict(self.customers)
        owners = {key: order.customer_id for key, order in self.orders.items()}
        touched: dict[Key, OrderFact] = {}
        for event in fresh:
            payload = event.payload
            if isinstance(payload, Order | Refund):
                order_id = payload.id if isinstance(payload, Order) else payload.order_id
                key = (SHOP, order_id)
                known = touched.get(key) or self.orders.get(key) or OrderFact(order_id)
                touched[key] = apply_to_owner(states, SHOP, known, event)
            elif changes_customer(event) and event.customer_id is not None:
                customer = (SHOP, event.customer_id)
                states[customer] = apply(states[customer], event)
        bases = {key: basis_of(state) for key, state in states.items()}
        settled, parts = settle_orders(
            self.aggregates,
            bases,
            touched,
            {key: self.parts.get(key) for key in touched},
            {key: owners.get(key) for key in touched},
            {SHOP: CATALOG},
            self.crossing(bases),
        )
        self.orders.update(touched)
        self.parts.update(parts)
        for key, state in states.items():
            self.customers[key] = replace(state, orders={})
            built = settled[key]
            if built is None or not covers(built, batch.now):
                self.rebuilds += 1
                basis = basis_of(state)
                rebuilt = {i: contribution(o, basis, CATALOG) for i, o in self.owned(key).items()}
                self.parts.update({(SHOP, i): part for i, part in rebuilt.items()})
                built = build(rebuilt, basis, batch.now)
            self.aggregates[key] = aged(built, batch.now)


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(histories())
def test_incremental_aggregates_equal_a_recompute_from_the_stored_orders(
    batches: list[Batch],
) -> None:
    store = Store()
    for batch in batches:
        store.apply_batch(batch)
        for key, state in store.customers.items():
            kept = store.aggregates[key]
            assert kept is not None
            incremental = facts_from(state, kept, batch.now)
            recomputed = derive_facts(replace(state, orders=store.owned(key)), CATALOG, batch.now)
            assert incremental == recomputed


def test_a_refund_of_the_largest_order_asks_for_a_rebuild() -> None:
    """Removing an extreme cannot be undone from sums; everything else is replaced exactly."""
    big = Contribution(counts=True, real=True, placed_at=at(3), net=Decimal(90))
    small = replace(big, placed_at=at(2), net=Decimal(10))
    aggregates = build({1: big, 2: small}, Basis(), NOW)
    assert aggregates.largest == 90 and aggregates.counted == 2
    refunded = replace(big, net=Decimal(50))
    assert replace_contribution(aggregates, 1, big, refunded) is None
    grown = replace_contribution(aggregates, 2, small, replace(small, net=big.net + 1))
    assert grown is not None and grown.largest == 91 and grown.net == 181
    gone = replace_contribution(aggregates, 2, small, NOTHING)
    assert gone is None  # order 2 is the last order: the new last one is unknown
