"""Rows ↔ state: how CustomerState, OrderFact and CustomerFacts are kept in PostgreSQL."""

import json
import re
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from services.common.envelope import loads_json
from services.segmenter.domain.aggregates import Aggregates, Basis, Contribution
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.state import (
    COUNTERS,
    CheckoutFact,
    CustomerState,
    LineFact,
    OrderFact,
    RefundFact,
    Stamp,
)

FACT_COLUMNS = tuple(f.name for f in fields(CustomerFacts))
_JSON_FACTS = frozenset({"product_type_counts", "vendor_counts", "product_counts"})
COUNTER_COLUMNS = tuple(COUNTERS.values())


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# Datetimes and dataclasses go through `str` too, as they did through json.dumps.
_DUMPS_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
_DUMPS_OPTIONS |= orjson.OPT_PASSTHROUGH_DATACLASS


# orjson holds integers in 64 bits: it refuses to write larger ones and reads them as floats.
# A payload may carry one (a line's quantity is any integer); such rows take the exact path.
_BEYOND_64_BITS = re.compile(r"\d{19}")


def dumps(value: Any) -> str:
    """JSON text for a jsonb parameter; Decimal goes in as a string, never through float."""
    try:
        return orjson.dumps(value, default=str, option=_DUMPS_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=str, separators=(",", ":"))


def _jsonb(value: Any) -> Any:
    # Rows hold no JSON fractions: `dumps` writes every Decimal as a string and nothing in
    # the segmenter's memory is a float (payloads decode fractions as Decimal), so the fast
    # parser is exact here, but for integers of 19 digits or more (some are beyond 64 bits).
    # Payloads themselves go through loads_json.
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        return value
    if _BEYOND_64_BITS.search(value):
        return loads_json(value)
    return orjson.loads(value)


def facts_to_row(facts: CustomerFacts) -> dict[str, Any]:
    """Column → value for the fact columns of `customers` (jsonb as JSON text)."""
    row: dict[str, Any] = {}
    for name in FACT_COLUMNS:
        value = getattr(facts, name)
        if name in _JSON_FACTS:
            value = dumps(dict(value))
        elif name == "tags":
            value = list(value)
        row[name] = value
    return row


def facts_from_row(row: Mapping[str, Any]) -> CustomerFacts:
    """The facts stored in a `customers` row."""
    values: dict[str, Any] = {}
    for name in FACT_COLUMNS:
        value = row[name]
        if name in _JSON_FACTS:
            value = _jsonb(value)
        elif name == "tags":
            value = tuple(value)
        values[name] = value
    return CustomerFacts(**values)


def profile_to_json(state: CustomerState) -> str:
    return dumps(
        {
            "attributes": {k: [s.value, _iso(s.at)] for k, s in state.profile.items()},
            "tags": {k: [s.value, _iso(s.at)] for k, s in state.tags.items()},
        }
    )


def profile_attribute(row: Mapping[str, Any], name: str) -> Any:
    """One attribute of a `customers` row's profile (e.g. first_name), or None if unknown."""
    profile = _jsonb(row["profile"]) or {}
    stamp = profile.get("attributes", {}).get(name)
    return stamp[0] if stamp else None


def checkouts_to_json(state: CustomerState) -> str:
    return dumps(
        {
            token: [_iso(c.started_at), _iso(c.updated_at), _iso(c.completed_at)]
            for token, c in state.checkouts.items()
        }
    )


def state_from_row(row: Mapping[str, Any], orders: Mapping[int, OrderFact]) -> CustomerState:
    """A customer's state from its `customers` row and its orders."""
    profile = _jsonb(row["profile"]) or {}
    checkouts = _jsonb(row["checkouts"]) or {}

    def stamps(raw: Mapping[str, list[Any]]) -> dict[str, Stamp]:
        return {k: Stamp(v[0], datetime.fromisoformat(v[1])) for k, v in raw.items()}

    return CustomerState(
        shop_id=row["shop_id"],
        customer_id=row["customer_id"],
        profile=stamps(profile.get("attributes", {})),
        tags=stamps(profile.get("tags", {})),
        checkouts={
            token: CheckoutFact(token, _time(v[0]), _time(v[1]), _time(v[2]))
            for token, v in checkouts.items()
        },
        counters={name: row[name] for name in COUNTER_COLUMNS if row[name]},
        last_engaged_at=row["last_engaged_at"],
        deleted=row["deleted"],
        orders=orders,
        managed_tags=frozenset(row.get("managed_tags") or ()),
    )


def order_to_json(order: OrderFact) -> tuple[str | None, str]:
    """(facts, refunds) jsonb texts of an order row; facts is None until the order was seen."""
    facts = None
    if order.seen:
        facts = dumps(
            {
                "placed_at": _iso(order.placed_at),
                "total": order.total,
                "cancelled": order.cancelled,
                "test": order.test,
                "updated_at": _iso(order.updated_at),
                "checkout_token": order.checkout_token,
                "lines": [[ln.product_id, ln.vendor, ln.quantity] for ln in order.lines],
                "rate": order.rate,
                "currency": order.currency,
            }
        )
    refunds = dumps(
        {
            str(k): [r.amount, _iso(r.at), r.presentment, r.line_rate, r.final]
            for k, r in order.refunds.items()
        }
    )
    return facts, refunds


def _decimal(value: Any) -> Decimal | None:
    return Decimal(value) if value is not None else None


def _refund_from_json(value: list[Any]) -> RefundFact:
    # Rows written before presentment money was kept hold [amount, at] only. That version
    # counted a pending or failed refund by its lines, so such a row is open to correction
    # by the next delivery of its order.
    amount, at, presentment, line_rate, final = [*value, None, None, False][:5]
    return RefundFact(
        _decimal(amount), _time(at), _decimal(presentment), _decimal(line_rate), final
    )


def order_from_row(row: Mapping[str, Any]) -> OrderFact:
    """An order from its `orders` row."""
    refunds = {int(k): _refund_from_json(v) for k, v in (_jsonb(row["refunds"]) or {}).items()}
    facts = _jsonb(row["facts"])
    if facts is None:
        return OrderFact(row["order_id"], row["customer_id"], refunds=refunds)
    return OrderFact(
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        seen=True,
        placed_at=_time(facts["placed_at"]),
        total=Decimal(facts["total"]) if facts["total"] is not None else None,
        cancelled=facts["cancelled"],
        test=facts["test"],
        updated_at=_time(facts["updated_at"]),
        checkout_token=facts["checkout_token"],
        lines=tuple(LineFact(p, v, q) for p, v, q in facts["lines"]),
        refunds=refunds,
        rate=_decimal(facts.get("rate")),
        currency=facts.get("currency"),
    )


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def aggregates_to_json(aggregates: Aggregates) -> str:
    """The jsonb text of a customer's aggregates (money as decimal strings)."""
    a = aggregates
    return dumps(
        {
            "basis": [_iso(a.basis.count_as_of), _iso(a.basis.spent_as_of)],
            "horizon": _iso(a.horizon),
            "counts": [a.counted, a.before, a.refunds, a.cancelled],
            "money": [
                _money(a.net),
                _money(a.known_then),
                _money(a.since),
                _money(a.later),
                _money(a.refunded),
                _money(a.largest),
            ],
            "orders_at": [_iso(a.first_at), _iso(a.last_at)],
            "products": dict(a.products),
            "types": dict(a.types),
            "vendors": dict(a.vendors),
            "checkout_tokens": dict(a.checkout_tokens),
            "recent": {str(i): [_iso(at), _money(net)] for i, (at, net) in a.recent.items()},
        }
    )


def aggregates_from_json(value: Any) -> Aggregates | None:
    """A customer's aggregates from its jsonb, None when not built yet."""
    raw = _jsonb(value)
    if raw is None:
        return None
    net, known_then, since, later, refunded, largest = (_decimal(m) for m in raw["money"])
    counted, before, refunds, cancelled = raw["counts"]
    first_at, last_at = (_time(t) for t in raw["orders_at"])
    recent: dict[int, tuple[datetime, Decimal]] = {}
    for order_id, (at, amount) in raw["recent"].items():
        placed, money = _time(at), _decimal(amount)
        if placed is not None and money is not None:
            recent[int(order_id)] = (placed, money)
    return Aggregates(
        basis=Basis(_time(raw["basis"][0]), _time(raw["basis"][1])),
        horizon=_time(raw["horizon"]),
        counted=counted,
        net=net or Decimal(0),
        before=before,
        known_then=known_then or Decimal(0),
        since=since or Decimal(0),
        later=later or Decimal(0),
        refunds=refunds,
        refunded=refunded or Decimal(0),
        cancelled=cancelled,
        first_at=first_at,
        last_at=last_at,
        largest=largest,
        products=raw["products"],
        types=raw["types"],
        vendors=raw["vendors"],
        checkout_tokens=raw["checkout_tokens"],
        recent=recent,
    )


_CONTRIBUTION_FIELDS = {f.name: f.default for f in fields(Contribution)}
_DECIMAL_FIELDS = frozenset({"net", "refunded", "known_then", "since", "later"})
_TUPLE_FIELDS = frozenset({"products", "types", "vendors"})


def contribution_to_json(part: Contribution) -> str:
    """The jsonb text of an order's contribution; only what differs from nothing is kept."""
    kept: dict[str, Any] = {}
    for name, default in _CONTRIBUTION_FIELDS.items():
        value = getattr(part, name)
        if value == default:
            continue
        if name in _TUPLE_FIELDS:
            value = list(value)
        elif name == "placed_at":
            value = _iso(value)
        kept[name] = value
    return dumps(kept)


def contribution_from_json(value: Any) -> Contribution | None:
    """An order's contribution from its jsonb, None when never computed."""
    raw = _jsonb(value)
    if raw is None:
        return None
    values: dict[str, Any] = {}
    for name, item in raw.items():
        if name in _DECIMAL_FIELDS:
            item = Decimal(item)
        elif name in _TUPLE_FIELDS:
            item = tuple(item)
        elif name == "placed_at":
            item = _time(item)
        values[name] = item
    return Contribution(**values)
