"""Per-customer order aggregates, kept incrementally: what the facts need of all orders.

Each order makes a `Contribution` to its owner's `Aggregates` (counts, sums, per-name counts,
its place in the rolling windows). An order's change replaces its old contribution with its
new one, so a batch touches only the orders its events name. What a replacement cannot undo
exactly returns None ("rebuild from the stored orders"): an extreme (first, last or largest
order) left behind, a Shopify totals floor taken at another moment (`Basis`), or an
evaluation earlier than the aggregates' window horizon.
"""

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from services.segmenter.domain.state import CustomerState, OrderFact, ProductFact

# The longest rolling window the facts read, and the slack kept behind it, so an evaluation a
# little earlier than the last one is still answered without a rebuild.
LONGEST_WINDOW = timedelta(days=365)
SLACK = timedelta(days=1)


def _frozen(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Basis:
    """The moments Shopify's own totals were taken at; they split orders into before/after."""

    count_as_of: datetime | None = None
    spent_as_of: datetime | None = None


@dataclass(frozen=True)
class Contribution:
    """What one order adds to its owner's aggregates (as of a `Basis` and a catalog)."""

    counts: bool = False
    real: bool = False
    cancelled: bool = False
    placed_at: datetime | None = None
    net: Decimal = Decimal(0)
    refunds: int = 0
    refunded: Decimal = Decimal(0)
    # With Shopify's totals: counted and placed by the count's moment …
    before: bool = False
    # … and, for real orders placed by the spend's moment, what Shopify knew of them then and
    # what was refunded since; `later` is the net of counted orders placed after it.
    known_then: Decimal = Decimal(0)
    since: Decimal = Decimal(0)
    later: Decimal = Decimal(0)
    products: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    vendors: tuple[str, ...] = ()
    checkout_token: str | None = None


NOTHING = Contribution()


@dataclass(frozen=True)
class Aggregates:
    """Sums of the contributions of a customer's orders, plus the orders inside the windows."""

    basis: Basis = field(default_factory=Basis)
    # Orders placed at or before this moment are out of every window (`recent` omits them).
    horizon: datetime | None = None
    counted: int = 0
    net: Decimal = Decimal(0)
    before: int = 0
    known_then: Decimal = Decimal(0)
    since: Decimal = Decimal(0)
    later: Decimal = Decimal(0)
    refunds: int = 0
    refunded: Decimal = Decimal(0)
    cancelled: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    largest: Decimal | None = None
    products: Mapping[str, int] = field(default_factory=_frozen)
    types: Mapping[str, int] = field(default_factory=_frozen)
    vendors: Mapping[str, int] = field(default_factory=_frozen)
    checkout_tokens: Mapping[str, int] = field(default_factory=_frozen)
    # Counted orders placed after `horizon`: order id → (placed_at, net).
    recent: Mapping[int, tuple[datetime, Decimal]] = field(default_factory=_frozen)


def _summary_as_of(state: CustomerState, name: str, kind: type) -> datetime | None:
    stamp = state.profile.get(name)
    if stamp is None:
        return None
    if isinstance(stamp.value, dict):
        value, raw = stamp.value.get("value"), stamp.value.get("as_of")
        as_of = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        return (as_of or stamp.at) if isinstance(value, kind) else None
    return stamp.at if isinstance(stamp.value, kind) else None


def basis_of(state: CustomerState) -> Basis:
    """The moments of the customer's Shopify totals (None where there is no such total)."""
    return Basis(
        _summary_as_of(state, "summary_orders_count", int),
        _summary_as_of(state, "summary_amount_spent", str),
    )


def _by_or_unknown(placed: datetime | None, moment: datetime) -> bool:
    return placed is None or placed <= moment


def _basis_terms(order: OrderFact, basis: Basis) -> dict[str, Any]:
    """The fields of the order's contribution that depend on the basis's moments."""
    counts, real, placed = order.counts, order.real, order.placed_at
    known_then = since = later = Decimal(0)
    spent_at = basis.spent_as_of
    if spent_at is not None:
        if real and _by_or_unknown(placed, spent_at):
            by_then = order.refunded_by(spent_at)
            known_then = max(Decimal(0), (order.total or Decimal(0)) - by_then)
            since = order.refunded - by_then
        elif counts and placed is not None and placed > spent_at:
            later = order.net_total
    count_at = basis.count_as_of
    return {
        "before": counts and count_at is not None and _by_or_unknown(placed, count_at),
        "known_then": known_then,
        "since": since,
        "later": later,
    }


def contribution(
    order: OrderFact, basis: Basis, catalog: Mapping[int, ProductFact]
) -> Contribution:
    """The order's contribution to its owner's aggregates."""
    if not order.seen:
        return NOTHING
    counts, real = order.counts, order.real
    types: set[str] = set()
    vendors: set[str] = set()
    if counts:
        for line in order.lines:
            product = catalog.get(line.product_id) if line.product_id is not None else None
            if product is not None and product.product_type:
                types.add(product.product_type)
            vendor = line.vendor or (product.vendor if product is not None else None)
            if vendor:
                vendors.add(vendor)
    return Contribution(
        counts=counts,
        real=real,
        cancelled=real and order.cancelled,
        placed_at=order.placed_at,
        net=order.net_total if counts else Decimal(0),
        refunds=len(order.refunds) if real else 0,
        refunded=order.refunded if real else Decimal(0),
        products=tuple(str(p) for p in order.product_ids) if counts else (),
        types=tuple(sorted(types)),
        vendors=tuple(sorted(vendors)),
        checkout_token=order.checkout_token,
        **_basis_terms(order, basis),
    )


def rebased(part: Contribution, order: OrderFact, basis: Basis) -> Contribution:
    """The order's stored contribution taken at another basis (its catalog terms kept)."""
    if not order.seen:
        return NOTHING
    return replace(part, **_basis_terms(order, basis))


def moved_from(old: Basis, new: Basis) -> datetime | None:
    """The earliest moment the basis moved from: only orders placed or refunded after it
    contribute differently under `new` than under `old`. None when a total appeared or went
    away, which splits every order anew."""
    moments: list[datetime] = []
    for was, now in ((old.count_as_of, new.count_as_of), (old.spent_as_of, new.spent_as_of)):
        if (was is None) != (now is None):
            return None
        if was is not None and now is not None and was != now:
            moments.append(min(was, now))
    return min(moments) if moments else None


def _recount(
    counts: Mapping[str, int], removed: Iterable[str], added: Iterable[str]
) -> Mapping[str, int]:
    """The per-name counts with one order's names taken out and another's put in."""
    removed, added = tuple(removed), tuple(added)
    if removed == added:
        return counts
    updated = Counter(counts)
    updated.subtract(removed)
    updated.update(added)
    return _frozen({name: n for name, n in updated.items() if n > 0})


def _holds_extreme(aggregates: Aggregates, old: Contribution, new: Contribution) -> bool:
    """Whether taking `old` away may lose the first, last or largest order (`new` of the same
    order keeps it only with the same moment, or a net at least as large)."""
    if not old.counts:
        return False
    placed = old.placed_at
    if placed is not None and placed in (aggregates.first_at, aggregates.last_at):
        if not (new.counts and new.placed_at == placed):
            return True
    return old.net == aggregates.largest and not (new.counts and new.net >= old.net)


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def replace_contribution(
    aggregates: Aggregates, order_id: int, old: Contribution, new: Contribution
) -> Aggregates | None:
    """The aggregates with one order's contribution replaced; None if that cannot be exact."""
    if old == new:
        return aggregates
    if _holds_extreme(aggregates, old, new):
        return None
    return _replaced(aggregates, order_id, old, new)


def _replaced(
    aggregates: Aggregates, order_id: int, old: Contribution, new: Contribution
) -> Aggregates:
    recent = dict(aggregates.recent)
    recent.pop(order_id, None)
    first, last, largest = aggregates.first_at, aggregates.last_at, aggregates.largest
    if new.counts:
        if new.placed_at is not None:
            first, last = _min(first, new.placed_at), _max(last, new.placed_at)
            if aggregates.horizon is None or new.placed_at > aggregates.horizon:
                recent[order_id] = (new.placed_at, new.net)
        largest = new.net if largest is None else max(largest, new.net)
    if aggregates.counted - old.counts + new.counts == 0:
        # No counted order left: nothing to be the extreme of.
        first = last = largest = None
    tokens = [old.checkout_token] if old.checkout_token else []
    new_tokens = [new.checkout_token] if new.checkout_token else []
    return replace(
        aggregates,
        counted=aggregates.counted - old.counts + new.counts,
        net=aggregates.net - old.net + new.net,
        before=aggregates.before - old.before + new.before,
        known_then=aggregates.known_then - old.known_then + new.known_then,
        since=aggregates.since - old.since + new.since,
        later=aggregates.later - old.later + new.later,
        refunds=aggregates.refunds - old.refunds + new.refunds,
        refunded=aggregates.refunded - old.refunded + new.refunded,
        cancelled=aggregates.cancelled - old.cancelled + new.cancelled,
        first_at=first,
        last_at=last,
        largest=largest,
        products=_recount(aggregates.products, old.products, new.products),
        types=_recount(aggregates.types, old.types, new.types),
        vendors=_recount(aggregates.vendors, old.vendors, new.vendors),
        checkout_tokens=_recount(aggregates.checkout_tokens, tokens, new_tokens),
        recent=_frozen(recent),
    )


def build(contributions: Mapping[int, Contribution], basis: Basis, now: datetime) -> Aggregates:
    """The aggregates of these orders' contributions (order id → contribution) from scratch.

    The sums of `_replaced` over every order, accumulated in place: one order at a time
    through `_replaced` would copy the windows' orders per order, quadratic in them.
    """
    horizon = now - LONGEST_WINDOW - SLACK
    counted = before = refunds = cancelled = 0
    net = known_then = since = later = refunded = Decimal(0)
    first: datetime | None = None
    last: datetime | None = None
    largest: Decimal | None = None
    products: Counter[str] = Counter()
    types: Counter[str] = Counter()
    vendors: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    recent: dict[int, tuple[datetime, Decimal]] = {}
    for order_id, part in contributions.items():
        counted += part.counts
        net += part.net
        before += part.before
        known_then += part.known_then
        since += part.since
        later += part.later
        refunds += part.refunds
        refunded += part.refunded
        cancelled += part.cancelled
        if part.counts:
            if part.placed_at is not None:
                first, last = _min(first, part.placed_at), _max(last, part.placed_at)
                if part.placed_at > horizon:
                    recent[order_id] = (part.placed_at, part.net)
            largest = part.net if largest is None else max(largest, part.net)
        products.update(part.products)
        types.update(part.types)
        vendors.update(part.vendors)
        if part.checkout_token:
            tokens[part.checkout_token] += 1
    if counted == 0:
        first = last = largest = None
    return Aggregates(
        basis=basis,
        horizon=horizon,
        counted=counted,
        net=net,
        before=before,
        known_then=known_then,
        since=since,
        later=later,
        refunds=refunds,
        refunded=refunded,
        cancelled=cancelled,
        first_at=first,
        last_at=last,
        largest=largest,
        products=_frozen(dict(products)),
        types=_frozen(dict(types)),
        vendors=_frozen(dict(vendors)),
        checkout_tokens=_frozen(dict(tokens)),
        recent=_frozen(recent),
    )


def covers(aggregates: Aggregates, now: datetime) -> bool:
    """Whether the aggregates hold every order inside the windows as of `now`."""
    return aggregates.horizon is None or now - LONGEST_WINDOW >= aggregates.horizon


def aged(aggregates: Aggregates, now: datetime) -> Aggregates:
    """The aggregates without the orders that left the longest window before `now - SLACK`."""
    horizon = now - LONGEST_WINDOW - SLACK
    if aggregates.horizon is not None and horizon <= aggregates.horizon:
        return aggregates
    recent = {i: entry for i, entry in aggregates.recent.items() if entry[0] > horizon}
    return replace(aggregates, horizon=horizon, recent=_frozen(recent))


Key = tuple[int, int]


def settle_orders(
    aggregates: Mapping[Key, Aggregates | None],
    bases: Mapping[Key, Basis],
    orders: Mapping[Key, OrderFact],
    stored: Mapping[Key, Contribution | None],
    stored_owners: Mapping[Key, int | None],
    catalog: Mapping[int, Mapping[int, ProductFact]],
    crossing: Mapping[Key, Mapping[int, tuple[OrderFact, Contribution | None]]] | None = None,
) -> tuple[dict[Key, Aggregates | None], dict[Key, Contribution]]:
    """Replace changed orders' stored contributions with their new ones in their owners'
    aggregates; return the aggregates by (shop, customer), None where only a rebuild from
    the stored orders is exact, and the new contributions by (shop, order).

    `bases` are the owners' bases after the changes; `stored` and `stored_owners` say what
    each order contributed and to whom before them. `crossing` holds, for owners whose basis
    moved, their other orders placed or refunded after `moved_from` (with what each
    contributed): those are re-taken at the new basis, the rest contribute as before.
    """
    settled: dict[Key, Aggregates | None] = {}
    parts: dict[Key, Contribution] = {}
    for key, built in aggregates.items():
        basis = bases[key]
        if built is None or built.basis == basis:
            settled[key] = built
        elif crossing is not None and key in crossing:
            settled[key] = _rebased(built, basis, key[0], crossing[key], orders, parts)
        else:
            # Shopify's totals taken at another moment split every order anew.
            settled[key] = None

    def swap(customer: Key, order_id: int, old: Contribution, new: Contribution) -> None:
        built = settled.get(customer)
        if built is not None:
            settled[customer] = replace_contribution(built, order_id, old, new)

    for key in sorted(orders):
        shop_id, order_id = key
        order = orders[key]
        stored_owner = stored_owners.get(key)
        owner = order.customer_id
        new = NOTHING
        if owner is not None:
            new = contribution(order, bases[(shop_id, owner)], catalog.get(shop_id, {}))
        parts[key] = new
        old = stored.get(key)
        if stored_owner is not None and old is None:
            # Written before contributions were kept: only a rebuild takes it out exactly.
            settled[(shop_id, stored_owner)] = None
            stored_owner = None
        if stored_owner is not None and stored_owner == owner:
            swap((shop_id, owner), order_id, old or NOTHING, new)
            continue
        if stored_owner is not None:
            swap((shop_id, stored_owner), order_id, old or NOTHING, NOTHING)
        if owner is not None:
            swap((shop_id, owner), order_id, NOTHING, new)
    return settled, parts


def _rebased(
    built: Aggregates,
    basis: Basis,
    shop_id: int,
    crossing: Mapping[int, tuple[OrderFact, Contribution | None]],
    orders: Mapping[Key, OrderFact],
    parts: dict[Key, Contribution],
) -> Aggregates | None:
    """The aggregates at a new basis, the crossing orders' contributions re-taken at it
    (new ones into `parts`); the batch's own orders are left to the batch."""
    moved: Aggregates | None = replace(built, basis=basis)
    retaken: dict[Key, Contribution] = {}
    for order_id, (order, old) in sorted(crossing.items()):
        if (shop_id, order_id) in orders:
            continue
        if old is None or moved is None:
            return None
        new = rebased(old, order, basis)
        moved = replace_contribution(moved, order_id, old, new)
        retaken[(shop_id, order_id)] = new
    if moved is not None:
        parts.update(retaken)
    return moved
