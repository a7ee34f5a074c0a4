"""Random order histories for the aggregate tests: orders and their versions, refunds (pending
then settled), cancellations, moves between customers, test orders, Shopify's totals from
customer payloads and imports, checkouts; duplicates and any order of delivery."""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from services.segmenter.domain.reducer import Event
from services.segmenter.domain.state import ProductFact
from tests.unit.segmenter.events import NOW, order, shopify_event

CUSTOMERS = (101, 102, 103)
ORDERS = tuple(range(1, 7))
PRODUCTS = (11, 12, 13)
CATALOG = {
    11: ProductFact(11, "Shirts", "Acme"),
    12: ProductFact(12, "Shirts", None),
    13: ProductFact(13, "Shoes", "Boots Co"),
}


@dataclass(frozen=True)
class Batch:
    """Events delivered together, evaluated at `now`."""

    events: tuple[Event, ...]
    now: datetime


def _when(days_ago: float) -> datetime:
    return NOW - timedelta(days=days_ago)


@st.composite
def order_events(draw: st.DrawFn) -> Event:
    order_id = draw(st.sampled_from(ORDERS))
    placed = _when(draw(st.sampled_from([0.5, 3, 29.9, 31, 89, 100, 364, 366, 800])))
    version = draw(st.integers(0, 3))
    customer = draw(st.sampled_from([*CUSTOMERS, None]))
    total = draw(st.sampled_from(["0.00", "20.00", "75.50", "200.00", "1200.00"]))
    lines = draw(
        st.lists(
            st.tuples(st.sampled_from([*PRODUCTS, None]), st.sampled_from(["Acme", None])),
            min_size=1,
            max_size=2,
        )
    )
    payload: dict[str, Any] = order(
        order_id,
        total,
        placed=placed,
        updated=placed + timedelta(hours=version),
        customer=customer,
        lines=lines,
        cancelled=placed + timedelta(hours=1) if draw(st.booleans()) and version else None,
        checkout_token=draw(st.sampled_from([None, "tok-a", "tok-b"])),
        refunds=[_refund(order_id, draw(st.sampled_from([91, 92])), "5.00", "success", placed)]
        if draw(st.integers(0, 4)) == 0
        else [],
    )
    payload["test"] = draw(st.integers(0, 6)) == 0
    if customer is not None and draw(st.integers(0, 3)) == 0:
        # Versions before 2024-10 carry Shopify's totals on the embedded customer.
        payload["customer"] = {**payload["customer"], "orders_count": 2, "total_spent": "90.00"}
    topic = draw(st.sampled_from(["orders/create", "orders/updated", "orders/paid"]))
    return shopify_event(topic, payload, when=placed + timedelta(hours=version))


def _refund(
    order_id: int, refund_id: int, amount: str, status: str, when: datetime
) -> dict[str, Any]:
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": when.isoformat(),
        "processed_at": when.isoformat(),
        "refund_line_items": [],
        "transactions": [{"kind": "refund", "status": status, "amount": amount}],
        "order_adjustments": [],
    }


@st.composite
def refund_events(draw: st.DrawFn) -> Event:
    order_id = draw(st.sampled_from(ORDERS))
    refund_id = draw(st.sampled_from([91, 92, 93]))
    when = _when(draw(st.sampled_from([0.2, 2, 40, 95, 400])))
    status = draw(st.sampled_from(["pending", "success", "failure"]))
    amount = draw(st.sampled_from(["5.00", "30.00", "500.00"]))
    return shopify_event(
        "refunds/create",
        _refund(order_id, refund_id, amount, status, when),
        event_id=f"refund-{refund_id}-{status}-{amount}-{when.isoformat()}",
        when=when,
    )


@st.composite
def customer_events(draw: st.DrawFn) -> Event:
    customer = draw(st.sampled_from(CUSTOMERS))
    updated = _when(draw(st.sampled_from([1, 10, 50, 200])))
    payload = {
        "id": customer,
        "updated_at": updated.isoformat(),
        "orders_count": draw(st.integers(0, 6)),
        "total_spent": draw(st.sampled_from(["0.00", "150.00", "2500.00"])),
    }
    event = shopify_event("customers/update", payload, when=updated)
    if draw(st.booleans()):
        # An import: the totals are as of the export, not the delivery.
        event = replace(event, as_of=_when(draw(st.sampled_from([5, 30, 300]))))
    return event


@st.composite
def checkout_events(draw: st.DrawFn) -> Event:
    customer = draw(st.sampled_from(CUSTOMERS))
    started = _when(draw(st.sampled_from([0.01, 0.5, 2, 40])))
    payload = {
        "token": draw(st.sampled_from(["tok-a", "tok-b", "tok-c"])),
        "created_at": started.isoformat(),
        "updated_at": started.isoformat(),
        "customer": {"id": customer, "updated_at": None, "created_at": None},
    }
    return shopify_event("checkouts/create", payload, when=started)


@st.composite
def histories(draw: st.DrawFn) -> list[Batch]:
    """Batches of events with evaluation times that move forward, repeats included."""
    events = draw(
        st.lists(
            st.one_of(
                order_events(),
                order_events(),
                refund_events(),
                customer_events(),
                checkout_events(),
            ),
            min_size=1,
            max_size=14,
        )
    )
    # Repeated deliveries of the same event (same id), anywhere in the stream.
    for event in draw(st.lists(st.sampled_from(tuple(events)), max_size=3)):
        events.insert(draw(st.integers(0, len(events))), event)
    batches: list[Batch] = []
    now = NOW
    while events:
        size = draw(st.integers(1, 4))
        batches.append(Batch(tuple(events[:size]), now))
        events = events[size:]
        now += timedelta(hours=draw(st.sampled_from([0, 1, 24 * 20, 24 * 200])))
    return batches
