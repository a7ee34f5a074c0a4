"""Named queries over the segmenter's tables; every value is a bound parameter."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.segmenter.domain.aggregates import Aggregates, Contribution
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.state import COUNTERS, CustomerState, OrderFact, ProductFact
from services.segmenter.storage.rows import (
    FACT_COLUMNS,
    aggregates_from_json,
    aggregates_to_json,
    checkouts_to_json,
    contribution_from_json,
    contribution_to_json,
    dumps,
    facts_from_row,
    facts_to_row,
    order_from_row,
    order_to_json,
    profile_to_json,
    state_from_row,
)

MARK_PROCESSED = """
INSERT INTO processed_events (shop_id, topic, event_id)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING
RETURNING shop_id, topic, event_id
"""
MARK_ENGAGEMENT_PROCESSED = """
INSERT INTO processed_engagement_events (shop_id, topic, event_id)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING
RETURNING shop_id, topic, event_id
"""
SHOP_IDS = "SELECT domain, id FROM shops WHERE domain = ANY($1::text[])"
# A new customer starts with empty aggregates (it has no stored orders to build them from).
ENSURE_CUSTOMERS = """
INSERT INTO customers (shop_id, customer_id, aggregates)
SELECT k.shop_id, k.customer_id, $3::jsonb FROM unnest($1::bigint[], $2::bigint[])
    AS k (shop_id, customer_id)
ON CONFLICT DO NOTHING
"""
_EMPTY_AGGREGATES = aggregates_to_json(Aggregates())
# Locks in one global order (shop, customer) so concurrent batches cannot deadlock on them.
# With the tags the tagger manages for each (tags.py OURS), which are not the merchant's.
LOCK_CUSTOMERS = """
SELECT c.*, ARRAY(
    SELECT l.tag_key FROM tag_ledger l
    WHERE l.shop_id = c.shop_id AND l.customer_id = c.customer_id
      AND l.state IN ('adding', 'added', 'removing', 'removed')
) AS managed_tags
FROM customers c
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
  ON c.shop_id = k.shop_id AND c.customer_id = k.customer_id
ORDER BY c.shop_id, c.customer_id
FOR UPDATE OF c
"""
ORDERS_OF_CUSTOMERS = """
SELECT o.* FROM orders o
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
  ON o.shop_id = k.shop_id AND o.customer_id = k.customer_id
"""
# The orders a moved basis splits anew: placed, or refunded, after the moment it moved from.
# Orders store their times as ISO text with an offset, so the casts are unambiguous.
ORDERS_CROSSING = """
SELECT o.* FROM orders o
JOIN unnest($1::bigint[], $2::bigint[], $3::timestamptz[]) AS k (shop_id, customer_id, moment)
  ON o.shop_id = k.shop_id AND o.customer_id = k.customer_id
WHERE (o.facts ->> 'placed_at')::timestamptz > k.moment
   OR EXISTS (
       SELECT 1 FROM jsonb_each(o.refunds) AS r (id, refund)
       WHERE (r.refund ->> 1)::timestamptz > k.moment
   )
"""
ENSURE_ORDERS = """
INSERT INTO orders (shop_id, order_id)
SELECT * FROM unnest($1::bigint[], $2::bigint[])
ON CONFLICT DO NOTHING
"""
LOCK_ORDERS = """
SELECT o.* FROM orders o
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, order_id)
  ON o.shop_id = k.shop_id AND o.order_id = k.order_id
ORDER BY o.shop_id, o.order_id
FOR UPDATE OF o
"""
ORDER_CUSTOMERS = """
SELECT o.shop_id, o.order_id, o.customer_id FROM orders o
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, order_id)
  ON o.shop_id = k.shop_id AND o.order_id = k.order_id
"""
# One statement per batch: arrays of the rows' values (product ids as array literals, since
# unnest would flatten an array of arrays).
SAVE_ORDERS = """
UPDATE orders o SET customer_id = u.customer_id, facts = u.facts::jsonb,
    refunds = u.refunds::jsonb, product_ids = u.product_ids::bigint[],
    contribution = u.contribution::jsonb, updated_at = now()
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
    $7::text[]) AS u (shop_id, order_id, customer_id, facts, refunds, product_ids, contribution)
WHERE o.shop_id = u.shop_id AND o.order_id = u.order_id
"""
SAVE_CONTRIBUTIONS = """
UPDATE orders o SET contribution = u.contribution::jsonb
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u (shop_id, order_id, contribution)
WHERE o.shop_id = u.shop_id AND o.order_id = u.order_id
"""
# An update, not DO NOTHING, on a product already queued: the row lock makes the scheduler
# skip it (SKIP LOCKED) until this batch commits, so it never fans out the older catalog.
QUEUE_FANOUT = """
INSERT INTO product_fanout (shop_id, product_id, held_until)
SELECT $1, product_id, $3 FROM unnest($2::bigint[]) AS p (product_id) ORDER BY product_id
ON CONFLICT (shop_id, product_id) DO UPDATE
SET queued_at = now(), held_until = EXCLUDED.held_until
"""
TAKE_FANOUT = """
DELETE FROM product_fanout f
WHERE f.shop_id = $1 AND f.product_id IN (
    SELECT product_id FROM product_fanout
    WHERE shop_id = $1 AND (held_until IS NULL OR held_until <= now())
    ORDER BY product_id LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING f.product_id
"""
FANOUT_SHOPS = """
SELECT DISTINCT shop_id FROM product_fanout
WHERE held_until IS NULL OR held_until <= now()
ORDER BY shop_id
"""
HELD_FANOUT = """
SELECT product_id FROM product_fanout WHERE shop_id = $1 AND held_until IS NOT NULL
ORDER BY product_id
"""
HOLD_FANOUT = (
    "UPDATE product_fanout SET held_until = $2 WHERE shop_id = $1 AND held_until IS NOT NULL"
)
RELEASE_FANOUT = """
DELETE FROM product_fanout
WHERE shop_id = $1 AND product_id = ANY($2::bigint[]) AND held_until IS NOT NULL
"""
PRODUCTS_WITH_BUYERS = """
SELECT p.product_id FROM unnest($2::bigint[]) AS p (product_id)
WHERE EXISTS (
    SELECT 1 FROM orders o
    WHERE o.shop_id = $1 AND o.product_ids && ARRAY[p.product_id] AND o.customer_id IS NOT NULL
)
"""
BUYERS_AFTER = """
SELECT DISTINCT customer_id FROM orders
WHERE shop_id = $1 AND product_ids && $2::bigint[] AND customer_id > $3
ORDER BY customer_id
LIMIT $4
"""
# Buyers of changed products are evaluated by the scheduler, in bounded batches; the rows are
# locked in key order, like every other writer locks customers.
SCHEDULE_BUYERS = """
WITH buyers AS (
    SELECT DISTINCT customer_id FROM orders
    WHERE shop_id = $1 AND product_ids && $2::bigint[] AND customer_id IS NOT NULL
), locked AS (
    SELECT c.customer_id FROM customers c JOIN buyers b USING (customer_id)
    WHERE c.shop_id = $1
    ORDER BY c.customer_id
    FOR UPDATE OF c
)
UPDATE customers c SET next_eval_at = LEAST(c.next_eval_at, $3::timestamptz), aggregates = NULL
FROM locked
WHERE c.shop_id = $1 AND c.customer_id = locked.customer_id
"""
PRODUCTS_FOR_UPDATE = """
SELECT p.* FROM products p
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, product_id)
  ON p.shop_id = k.shop_id AND p.product_id = k.product_id
ORDER BY p.shop_id, p.product_id
FOR UPDATE OF p
"""
UPSERT_PRODUCT = """
INSERT INTO products (shop_id, product_id, product_type, vendor, title, source_updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (shop_id, product_id) DO UPDATE
SET product_type = EXCLUDED.product_type, vendor = EXCLUDED.vendor, title = EXCLUDED.title,
    source_updated_at = EXCLUDED.source_updated_at
WHERE products.source_updated_at IS NULL
   OR EXCLUDED.source_updated_at IS NULL
   OR EXCLUDED.source_updated_at >= products.source_updated_at
"""
PRODUCTS = """
SELECT p.* FROM products p
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, product_id)
  ON p.shop_id = k.shop_id AND p.product_id = k.product_id
"""
# An order's contribution is computed from the catalog as its batch reads it, and a change
# of a product's type is fanned out to the buyers whose orders are visible then. A batch
# writing orders therefore holds its products (a row with no details where the product is
# not known yet) until it commits: a products/* batch waits for it, so its fan-out sees the
# order; or it waits for that batch, and reads the new type.
PRODUCT_PLACEHOLDERS = """
INSERT INTO products (shop_id, product_id)
SELECT k.shop_id, k.product_id FROM unnest($1::bigint[], $2::bigint[]) AS k (shop_id, product_id)
ORDER BY k.shop_id, k.product_id
ON CONFLICT (shop_id, product_id) DO NOTHING
"""
PRODUCTS_FOR_SHARE = """
SELECT p.* FROM products p
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, product_id)
  ON p.shop_id = k.shop_id AND p.product_id = k.product_id
ORDER BY p.shop_id, p.product_id
FOR SHARE OF p
"""
MEMBERSHIPS_OF_CUSTOMERS = """
SELECT m.shop_id, m.customer_id, m.segment_id, m.since FROM memberships m
JOIN unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
  ON m.shop_id = k.shop_id AND m.customer_id = k.customer_id
"""
ADD_MEMBERSHIPS = """
INSERT INTO memberships (shop_id, segment_id, customer_id, since)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[])
ON CONFLICT DO NOTHING
"""
REMOVE_MEMBERSHIPS = """
DELETE FROM memberships m
USING unnest($1::bigint[], $2::bigint[]) AS k (segment_id, customer_id)
WHERE m.segment_id = k.segment_id AND m.customer_id = k.customer_id
"""
ADD_CHANGES = """
INSERT INTO segment_changes (shop_id, customer_id, segment_id, segment_handle, segment_version,
    change, cause, cause_event_id, received_at, changed_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::int[],
    $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[])
"""
# A segment being deleted is no longer evaluated; its exits are written by its backfill run.
SEGMENTS_OF_SHOPS = """
SELECT id, shop_id, handle, version, conditions FROM segments
WHERE shop_id = ANY($1::bigint[]) AND NOT deleting
"""
# Two-int advisory locks live apart from single-bigint ones (the migration lock uses those).
SHOP_LOCK_CLASS = 0x5E6
LOCK_SHOP_SHARED = "SELECT pg_advisory_xact_lock_shared($1::int, $2::int)"
LOCK_SHOP_EXCLUSIVE = "SELECT pg_advisory_xact_lock($1::int, $2::int)"
# Due customers are picked without locks (index on next_eval_at), their shops locked shared,
# then the customers locked (SKIP LOCKED: another replica has them) and checked again.
DUE_CANDIDATES = """
SELECT shop_id, customer_id FROM customers
WHERE next_eval_at <= $1
ORDER BY next_eval_at
LIMIT $2
"""
LOCK_DUE = """
SELECT c.shop_id, c.customer_id FROM customers c
JOIN unnest($2::bigint[], $3::bigint[]) AS k (shop_id, customer_id)
  ON c.shop_id = k.shop_id AND c.customer_id = k.customer_id
WHERE c.next_eval_at <= $1
ORDER BY c.shop_id, c.customer_id
FOR UPDATE OF c SKIP LOCKED
"""
# Bounded deletes that read only the rows they delete (index on processed_at).
PURGE_PROCESSED = """
DELETE FROM processed_events WHERE ctid IN (
    SELECT ctid FROM processed_events WHERE processed_at < $1 LIMIT $2
)
"""
PURGE_ENGAGEMENT_PROCESSED = """
DELETE FROM processed_engagement_events WHERE ctid IN (
    SELECT ctid FROM processed_engagement_events WHERE processed_at < $1 LIMIT $2
)
"""

_STATE_COLUMNS = ("profile", "checkouts", "deleted", "evaluated_at", "next_eval_at", "aggregates")
_SAVE_COLUMNS = FACT_COLUMNS[2:] + _STATE_COLUMNS
_JSONB = {
    "profile",
    "checkouts",
    "aggregates",
    "product_type_counts",
    "vendor_counts",
    "product_counts",
}
_TIMES = {name for name in _SAVE_COLUMNS if name.endswith("_at")}
_BOOLEANS = {"accepts_email_marketing", "accepts_sms_marketing", "deleted"}
_TEXTS = {
    "email",
    "country_code",
    "province_code",
    "city",
    "account_state",
    "top_product_type",
    "rfm_segment",
    "lifecycle_stage",
}
_NUMERICS = {
    "total_spent",
    "average_order_value",
    "largest_order_value",
    "refunded_total",
    "spent_30d",
    "spent_90d",
    "spent_365d",
}


def _array_type(name: str) -> str:
    if name in _JSONB or name in _TEXTS or name == "tags":
        return "text[]"
    if name in _TIMES:
        return "timestamptz[]"
    if name in _BOOLEANS:
        return "boolean[]"
    if name in _NUMERICS:
        return "numeric[]"
    return "int[]"


def _assignment(name: str) -> str:
    if name in _JSONB:
        return f"{name} = u.{name}::jsonb"
    if name == "tags":
        # The tags go in as JSON texts: unnest would flatten an array of arrays.
        return "tags = ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb))"
    return f"{name} = u.{name}"


# One statement per batch over arrays of the rows' values (PostgreSQL casts int to smallint
# on assignment).
SAVE_CUSTOMERS = """
UPDATE customers c SET {assignments}, updated_at = now()
FROM unnest($1::bigint[], $2::bigint[], {arrays}) AS u (shop_id, customer_id, {names})
WHERE c.shop_id = u.shop_id AND c.customer_id = u.customer_id
""".format(
    assignments=", ".join(_assignment(name) for name in _SAVE_COLUMNS),
    arrays=", ".join(f"${i}::{_array_type(name)}" for i, name in enumerate(_SAVE_COLUMNS, start=3)),
    names=", ".join(_SAVE_COLUMNS),
)


@dataclass(frozen=True)
class LockedCustomer:
    """A customer locked for this transaction: its state (without orders), its order
    aggregates (None until built), and the facts and evaluation time last stored."""

    state: CustomerState
    aggregates: Aggregates | None
    facts: CustomerFacts
    evaluated_at: datetime | None


@dataclass(frozen=True)
class Change:
    """One entry into or exit from a segment, to be written to the outbox."""

    shop_id: int
    customer_id: int
    segment_id: int
    segment_handle: str
    segment_version: int
    change: str
    cause: str
    cause_event_id: str | None
    received_at: datetime | None
    changed_at: datetime


Key = tuple[int, int]


def _columns(keys: Iterable[Key]) -> tuple[list[int], list[int]]:
    firsts, seconds = [], []
    for first, second in keys:
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


async def shop_ids(conn: asyncpg.Connection, domains: Iterable[str]) -> dict[str, int]:
    rows = await conn.fetch(SHOP_IDS, sorted(set(domains)))
    return {row["domain"]: row["id"] for row in rows}


async def mark_processed(
    conn: asyncpg.Connection, keys: Sequence[tuple[int, str, str]]
) -> set[tuple[int, str, str]]:
    """Record (shop, topic, event id) as processed; return those that were new.

    Engagement events' ids go to a table of their own, kept far longer.
    """
    fresh: set[tuple[int, str, str]] = set()
    engagement = [key for key in keys if key[1] in COUNTERS]
    others = [key for key in keys if key[1] not in COUNTERS]
    for query, chosen in ((MARK_PROCESSED, others), (MARK_ENGAGEMENT_PROCESSED, engagement)):
        if not chosen:
            continue
        shops, topics, ids = zip(*chosen, strict=True)
        rows = await conn.fetch(query, list(shops), list(topics), list(ids))
        fresh.update((row["shop_id"], row["topic"], row["event_id"]) for row in rows)
    return fresh


async def purge(conn: asyncpg.Connection, query: str, cutoff: datetime, limit: int) -> int:
    """Run one bounded purge statement; return how many rows it deleted."""
    status: str = await conn.execute(query, cutoff, limit)
    return int(status.split()[-1])


async def order_customers(conn: asyncpg.Connection, keys: Iterable[Key]) -> dict[Key, int | None]:
    rows = await conn.fetch(ORDER_CUSTOMERS, *_columns(keys))
    return {(row["shop_id"], row["order_id"]): row["customer_id"] for row in rows}


async def queue_fanout(
    conn: asyncpg.Connection,
    shop_id: int,
    product_ids: Sequence[int],
    held_until: datetime | None = None,
) -> None:
    """Remember that these products changed, so the scheduler makes their buyers due (not
    before `held_until`: an import evaluates them itself)."""
    await conn.execute(QUEUE_FANOUT, shop_id, list(product_ids), held_until)


async def held_fanout(conn: asyncpg.Connection, shop_id: int) -> list[int]:
    """The shop's changed products held for an import (perhaps one that stopped)."""
    return [row["product_id"] for row in await conn.fetch(HELD_FANOUT, shop_id)]


async def hold_fanout(conn: asyncpg.Connection, shop_id: int, held_until: datetime) -> None:
    """Extend the hold on the shop's products held for an import."""
    await conn.execute(HOLD_FANOUT, shop_id, held_until)


async def release_fanout(
    conn: asyncpg.Connection, shop_id: int, product_ids: Sequence[int]
) -> None:
    """Forget held products whose buyers the import has evaluated."""
    await conn.execute(RELEASE_FANOUT, shop_id, list(product_ids))


async def products_with_buyers(
    conn: asyncpg.Connection, shop_id: int, product_ids: Sequence[int]
) -> list[int]:
    """Those of the products somebody has ordered already."""
    rows = await conn.fetch(PRODUCTS_WITH_BUYERS, shop_id, list(product_ids))
    return [row["product_id"] for row in rows]


async def buyers_after(
    conn: asyncpg.Connection, shop_id: int, product_ids: Sequence[int], after: int, limit: int
) -> list[int]:
    """The next `limit` customers (by id, above `after`) who ordered one of the products."""
    rows = await conn.fetch(BUYERS_AFTER, shop_id, list(product_ids), after, limit)
    return [row["customer_id"] for row in rows]


async def fanout_shops(conn: asyncpg.Connection) -> list[int]:
    """Shops with changed products whose buyers are still to be made due."""
    return [row["shop_id"] for row in await conn.fetch(FANOUT_SHOPS)]


async def take_fanout(conn: asyncpg.Connection, shop_id: int, limit: int) -> list[int]:
    """Remove and return up to `limit` queued products of a shop (SKIP LOCKED: another
    replica has the rest)."""
    return [row["product_id"] for row in await conn.fetch(TAKE_FANOUT, shop_id, limit)]


async def schedule_buyers(
    conn: asyncpg.Connection, shop_id: int, product_ids: Sequence[int], now: datetime
) -> None:
    """Make every customer who ordered one of these products due for evaluation at `now`."""
    await conn.execute(SCHEDULE_BUYERS, shop_id, list(product_ids), now)


async def lock_states(
    conn: asyncpg.Connection, keys: Iterable[Key], *, create: bool = True
) -> dict[Key, LockedCustomer]:
    """Create missing customers (unless not `create`), lock all of them, and load their state
    and aggregates (one row each; their orders stay in the table). Without `create`, a
    customer deleted meanwhile (erased) is left out."""
    columns = _columns(sorted(set(keys)))
    if create:
        await conn.execute(ENSURE_CUSTOMERS, *columns, _EMPTY_AGGREGATES)
    rows = await conn.fetch(LOCK_CUSTOMERS, *columns)
    return {
        (row["shop_id"], row["customer_id"]): LockedCustomer(
            state_from_row(row, {}),
            aggregates_from_json(row["aggregates"]),
            facts_from_row(row),
            row["evaluated_at"],
        )
        for row in rows
    }


async def orders_of_customers(
    conn: asyncpg.Connection, keys: Iterable[Key]
) -> dict[Key, dict[int, OrderFact]]:
    """Every stored order of these customers (to build their aggregates from scratch)."""
    orders: dict[Key, dict[int, OrderFact]] = {}
    for row in await conn.fetch(ORDERS_OF_CUSTOMERS, *_columns(sorted(set(keys)))):
        order = order_from_row(row)
        orders.setdefault((row["shop_id"], row["customer_id"]), {})[order.order_id] = order
    return orders


async def orders_crossing(
    conn: asyncpg.Connection, moments: Mapping[Key, datetime]
) -> dict[Key, dict[int, tuple[OrderFact, Contribution | None]]]:
    """The customers' orders placed or refunded after each one's moment, with what each
    contributed (to re-take them at a moved basis without reading every order)."""
    keys = sorted(moments)
    rows = await conn.fetch(
        ORDERS_CROSSING, [k[0] for k in keys], [k[1] for k in keys], [moments[k] for k in keys]
    )
    crossing: dict[Key, dict[int, tuple[OrderFact, Contribution | None]]] = {}
    for row in rows:
        order = order_from_row(row)
        crossing.setdefault((row["shop_id"], row["customer_id"]), {})[order.order_id] = (
            order,
            contribution_from_json(row["contribution"]),
        )
    return crossing


async def lock_orders(
    conn: asyncpg.Connection, keys: Iterable[Key]
) -> tuple[dict[Key, OrderFact], dict[Key, Contribution | None]]:
    """Create missing orders as placeholders, lock them, and load them with what each last
    contributed to its owner's aggregates."""
    columns = _columns(sorted(set(keys)))
    await conn.execute(ENSURE_ORDERS, *columns)
    rows = await conn.fetch(LOCK_ORDERS, *columns)
    orders = {(row["shop_id"], row["order_id"]): order_from_row(row) for row in rows}
    parts = {
        (row["shop_id"], row["order_id"]): contribution_from_json(row["contribution"])
        for row in rows
    }
    return orders, parts


def _id_array(ids: Sequence[int]) -> str:
    return "{" + ",".join(str(i) for i in ids) + "}"


async def save_orders(
    conn: asyncpg.Connection, orders: Iterable[tuple[int, OrderFact, Contribution | None]]
) -> None:
    """Write orders and their contributions, one statement for all of them."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [])
    for shop_id, order, part in orders:
        facts, refunds = order_to_json(order)
        values = (
            shop_id,
            order.order_id,
            order.customer_id,
            facts,
            refunds,
            _id_array(order.product_ids),
            None if part is None else contribution_to_json(part),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    if columns[0]:
        await conn.execute(SAVE_ORDERS, *columns)


async def save_contributions(
    conn: asyncpg.Connection, parts: Iterable[tuple[int, int, Contribution]]
) -> None:
    """Write what these orders (shop id, order id) contribute, one statement for all."""
    rows = list(parts)
    if rows:
        await conn.execute(
            SAVE_CONTRIBUTIONS,
            [shop_id for shop_id, _, _ in rows],
            [order_id for _, order_id, _ in rows],
            [contribution_to_json(part) for _, _, part in rows],
        )


async def save_products(
    conn: asyncpg.Connection, products: Iterable[tuple[int, ProductFact]]
) -> dict[int, list[int]]:
    """Upsert products (an older version never replaces a newer one); return, by shop, the
    products whose type or vendor changed, since only those change customers' facts."""
    wanted = sorted(((shop_id, p.product_id), p) for shop_id, p in products)
    if not wanted:
        return {}
    known = {
        (row["shop_id"], row["product_id"]): row
        for row in await conn.fetch(PRODUCTS_FOR_UPDATE, *_columns(k for k, _ in wanted))
    }
    changed: dict[int, list[int]] = {}
    args = []
    for (shop_id, product_id), product in wanted:
        row = known.get((shop_id, product_id))
        if row is not None and not _is_newer(product.updated_at, row["source_updated_at"]):
            continue
        args.append(
            (
                shop_id,
                product_id,
                product.product_type,
                product.vendor,
                product.title,
                product.updated_at,
            )
        )
        before = (row["product_type"], row["vendor"]) if row is not None else (None, None)
        if (product.product_type, product.vendor) != before:
            changed.setdefault(shop_id, []).append(product_id)
    if args:
        await conn.executemany(UPSERT_PRODUCT, args)
    return changed


def _is_newer(candidate: datetime | None, known: datetime | None) -> bool:
    return candidate is None or known is None or candidate >= known


async def load_catalog(
    conn: asyncpg.Connection, keys: Iterable[Key], hold: bool = False
) -> dict[int, dict[int, ProductFact]]:
    """Products by shop, then by product id; with `hold`, kept from change until the
    transaction ends (see PRODUCT_PLACEHOLDERS)."""
    catalog: dict[int, dict[int, ProductFact]] = {}
    columns = _columns(sorted(set(keys)))
    if hold and columns[0]:
        await conn.execute(PRODUCT_PLACEHOLDERS, *columns)
    for row in await conn.fetch(PRODUCTS_FOR_SHARE if hold else PRODUCTS, *columns):
        catalog.setdefault(row["shop_id"], {})[row["product_id"]] = ProductFact(
            row["product_id"], row["product_type"], row["vendor"], row["title"]
        )
    return catalog


async def save_customers(
    conn: asyncpg.Connection,
    rows: Iterable[tuple[CustomerState, CustomerFacts, datetime, datetime | None]],
    aggregates: Mapping[Key, Aggregates] | None = None,
) -> None:
    """Write state, facts, evaluation times and aggregates of customers locked in this
    transaction, in one statement; a customer without aggregates here gets them rebuilt
    from its stored orders when next evaluated."""
    built = aggregates or {}
    columns: list[list[Any]] = [[] for _ in range(len(_SAVE_COLUMNS) + 2)]
    for state, facts, evaluated_at, next_eval_at in rows:
        values = facts_to_row(facts)
        kept = built.get((state.shop_id, state.customer_id))
        values.update(
            tags=dumps(list(facts.tags)),
            profile=profile_to_json(state),
            checkouts=checkouts_to_json(state),
            deleted=state.deleted,
            evaluated_at=evaluated_at,
            next_eval_at=next_eval_at,
            aggregates=None if kept is None else aggregates_to_json(kept),
        )
        row = (state.shop_id, state.customer_id, *(values[c] for c in _SAVE_COLUMNS))
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    if columns[0]:
        await conn.execute(SAVE_CUSTOMERS, *columns)


async def memberships_of(conn: asyncpg.Connection, keys: Iterable[Key]) -> dict[Key, set[int]]:
    found: dict[Key, set[int]] = {}
    for row in await conn.fetch(MEMBERSHIPS_OF_CUSTOMERS, *_columns(set(keys))):
        found.setdefault((row["shop_id"], row["customer_id"]), set()).add(row["segment_id"])
    return found


async def write_changes(conn: asyncpg.Connection, changes: Sequence[Change]) -> None:
    """Apply membership changes and write them to the outbox, in the caller's transaction."""
    if not changes:
        return
    entered = [c for c in changes if c.change == "entered"]
    exited = [c for c in changes if c.change == "exited"]
    if entered:
        await conn.execute(
            ADD_MEMBERSHIPS,
            [c.shop_id for c in entered],
            [c.segment_id for c in entered],
            [c.customer_id for c in entered],
            [c.changed_at for c in entered],
        )
    if exited:
        await conn.execute(
            REMOVE_MEMBERSHIPS, [c.segment_id for c in exited], [c.customer_id for c in exited]
        )
    await conn.execute(
        ADD_CHANGES,
        [c.shop_id for c in changes],
        [c.customer_id for c in changes],
        [c.segment_id for c in changes],
        [c.segment_handle for c in changes],
        [c.segment_version for c in changes],
        [c.change for c in changes],
        [c.cause for c in changes],
        [c.cause_event_id for c in changes],
        [c.received_at for c in changes],
        [c.changed_at for c in changes],
    )


def _shop_lock_key(shop_id: int) -> tuple[int, int]:
    return SHOP_LOCK_CLASS, shop_id % 2**31


async def lock_shops_shared(conn: asyncpg.Connection, shop_ids: Iterable[int]) -> None:
    """Hold the shops' segment definitions still for this transaction (segment edits wait).

    Taken before any row lock, always in shop order, so it cannot deadlock with an edit.
    """
    for shop_id in sorted(set(shop_ids)):
        await conn.execute(LOCK_SHOP_SHARED, *_shop_lock_key(shop_id))


async def lock_shop_exclusive(conn: asyncpg.Connection, shop_id: int) -> None:
    """Wait until no batch evaluates this shop's customers, and keep them out until commit."""
    await conn.execute(LOCK_SHOP_EXCLUSIVE, *_shop_lock_key(shop_id))


async def due_customers(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Key]:
    """Customers whose next evaluation time has come, locked for this transaction (SKIP LOCKED).

    The shops are locked (shared) first, then the customers, the order every writer uses.
    """
    candidates = [
        (r["shop_id"], r["customer_id"]) for r in await conn.fetch(DUE_CANDIDATES, now, limit)
    ]
    if not candidates:
        return []
    await lock_shops_shared(conn, {shop_id for shop_id, _ in candidates})
    rows = await conn.fetch(LOCK_DUE, now, *_columns(candidates))
    return [(row["shop_id"], row["customer_id"]) for row in rows]
