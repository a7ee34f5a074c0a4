"""Shopify's compliance webhooks in the database: erase a customer or a shop, remember what was
erased without naming it, and record a customer's data requests.

Each role erases what it writes (the segmenter its state, the tagger its ledger and journeys),
in the transaction that consumes the request, and both remember the erased ids: whichever reads
the request first keeps the other from bringing the customer back. Nothing here logs or keeps
personal data; `privacy_log` says only that a request was carried out.
"""

from collections.abc import Iterable
from datetime import datetime

import asyncpg

Key = tuple[int, int]

# The digest of an erased id under the shop's salt; 'c' customers, 'o' orders.
_DIGEST = "sha256(s.erasure_salt || convert_to(k.kind, 'UTF8') || int8send(k.id))"

ERASED_AMONG = f"""
SELECT k.kind, k.shop_id, k.id
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(kind, shop_id, id)
JOIN shops s ON s.id = k.shop_id
JOIN erased_ids e ON e.shop_id = k.shop_id AND e.digest = {_DIGEST}
"""
REMEMBER_ERASED = f"""
INSERT INTO erased_ids (shop_id, digest, erased_at)
SELECT k.shop_id, {_DIGEST}, $4
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(kind, shop_id, id)
JOIN shops s ON s.id = k.shop_id
ON CONFLICT (shop_id, digest) DO NOTHING
"""
# Held by the tagger's erasure (exclusive) and by every tagger writer that may write a
# customer's rows after reading them earlier (shared), so a write lands before the erasure or
# sees it. Customers share ERASURE_BUCKETS locks, so a transaction holds at most that many
# whatever its size (a bulk round has 100,000 customers; the lock table holds far fewer);
# writers never wait on each other, only on an erasure in their bucket.
ERASURE_LOCK_CLASS = 0x5EA
ERASURE_BUCKETS = 64
LOCK_BUCKET_SHARED = "SELECT pg_advisory_xact_lock_shared($1::int, $2::int)"
LOCK_BUCKET_EXCLUSIVE = "SELECT pg_advisory_xact_lock($1::int, $2::int)"
LOG_REQUEST = "INSERT INTO privacy_log (kind, shop_id, rows_erased, at) VALUES ($1, $2, $3, $4)"

# The segmenter's rows of a customer. Orders go by owner and by the ids Shopify names (a guest
# order, or one that moved, has another owner or none).
ERASE_ORDERS = """
DELETE FROM orders WHERE shop_id = $1 AND (customer_id = $2 OR order_id = ANY($3::bigint[]))
RETURNING order_id
"""
ERASE_SEGMENTER = (
    "DELETE FROM memberships WHERE shop_id = $1 AND customer_id = $2",
    "DELETE FROM segment_changes WHERE shop_id = $1 AND customer_id = $2",
    "DELETE FROM data_requests WHERE shop_id = $1 AND customer_id = $2",
    "DELETE FROM customers WHERE shop_id = $1 AND customer_id = $2",
)

MARK_EXPORTED = """
UPDATE data_requests SET exported_at = $3
WHERE shop_id = $1 AND customer_id = $2 AND exported_at IS NULL
"""
DATA_REQUESTS = """
SELECT id, customer_id, shopify_request_id, requested_at, exported_at FROM data_requests
WHERE shop_id = $1 AND (NOT $2 OR exported_at IS NULL)
ORDER BY requested_at, id
LIMIT 1000
"""
RECORD_DATA_REQUEST = """
INSERT INTO data_requests (shop_id, customer_id, shopify_request_id, requested_at, order_ids)
VALUES ($1, $2, $3, $4, $5)
"""

REMEMBER_REDACTED_SHOP = """
INSERT INTO redacted_shops (domain, redacted_at) VALUES ($1, $2)
ON CONFLICT (domain) DO UPDATE SET redacted_at = EXCLUDED.redacted_at
"""
# Every table of the shop goes with this row (ON DELETE CASCADE), its secrets included.
DELETE_SHOP = "DELETE FROM shops WHERE id = $1"
SHOP_CREATED = "SELECT id, created_at FROM shops WHERE domain = $1 FOR UPDATE"
REDACTIONS_OF = "SELECT domain, redacted_at FROM redacted_shops WHERE domain = ANY($1::text[])"
REDACTED_SHOPS_AMONG = "SELECT domain FROM redacted_shops WHERE domain = ANY($1::text[])"


# Every table holding a customer's rows, with the condition naming them ($1 shop id, $2
# customer id): the export reads these, and a test fails when a table with customer data is
# neither here nor listed as holding none (tests/integration/common/test_privacy.py).
CUSTOMER_TABLES: dict[str, str] = {
    "customers": "shop_id = $1 AND customer_id = $2",
    # With the orders a pending data request names (a guest order has no customer).
    "orders": (
        "shop_id = $1 AND (customer_id = $2 OR order_id IN (SELECT unnest(r.order_ids)"
        " FROM data_requests r WHERE r.shop_id = $1 AND r.customer_id = $2))"
    ),
    "memberships": "shop_id = $1 AND customer_id = $2",
    "segment_changes": "shop_id = $1 AND customer_id = $2",
    "data_requests": "shop_id = $1 AND customer_id = $2",
    "tag_ledger": "shop_id = $1 AND customer_id = $2",
    "tag_work": "shop_id = $1 AND customer_id = $2",
    "tag_bulk_operations": (
        "shop_id = $1 AND lines @> jsonb_build_array(jsonb_build_array($2::bigint))"
    ),
    "journey_enrolments": "shop_id = $1 AND customer_id = $2",
    "journey_seen": (
        "journey_id IN (SELECT id FROM journeys WHERE shop_id = $1) AND customer_id = $2"
    ),
    "journey_sends": (
        "enrolment_id IN (SELECT id FROM journey_enrolments"
        " WHERE shop_id = $1 AND customer_id = $2)"
    ),
    "journey_conversions": (
        "enrolment_id IN (SELECT id FROM journey_enrolments"
        " WHERE shop_id = $1 AND customer_id = $2)"
    ),
    "consent_overrides": "shop_id = $1 AND customer_id = $2",
}


# A bulk operation holds many customers' lines: the export shows this customer's only.
_EXPORT_ROW = {
    "tag_bulk_operations": (
        "to_jsonb(t) - 'shop_id' || jsonb_build_object('lines', (SELECT jsonb_agg(line)"
        " FROM jsonb_array_elements(t.lines) AS line WHERE (line ->> 0)::bigint = $2))"
    ),
}


def export_query() -> str:
    """One statement: a JSON object of every customer table's rows for ($1 shop, $2 customer),
    built by PostgreSQL so numbers stay exact."""
    plain = "to_jsonb(t) - 'shop_id'"
    parts = ", ".join(
        f"'{table}', (SELECT coalesce(jsonb_agg({_EXPORT_ROW.get(table, plain)}), '[]'::jsonb)"
        f" FROM {table} t WHERE {where})"
        for table, where in CUSTOMER_TABLES.items()
    )
    return f"SELECT jsonb_build_object({parts})::text"


def _columns(customers: Iterable[Key], orders: Iterable[Key]) -> tuple[list[str], ...]:
    kinds: list[str] = []
    shops: list[int] = []
    ids: list[int] = []
    for kind, keys in (("c", customers), ("o", orders)):
        for shop_id, id_ in keys:
            kinds.append(kind)
            shops.append(shop_id)
            ids.append(id_)
    return kinds, shops, ids  # type: ignore[return-value]


def erasure_bucket(key: Key) -> int:
    """The erasure lock a customer falls under (stable across processes)."""
    shop_id, customer_id = key
    return (shop_id * 1_000_003 + customer_id) % ERASURE_BUCKETS


async def lock_customers(
    conn: asyncpg.Connection, keys: Iterable[Key], erasing: Iterable[Key] = ()
) -> None:
    """Hold these customers against erasure until the transaction ends; those `erasing`
    exclusively. Each bucket once, in order, so no two holders wait on each other in a cycle."""
    modes = dict.fromkeys({erasure_bucket(k) for k in keys}, False)
    modes.update(dict.fromkeys({erasure_bucket(k) for k in erasing}, True))
    for bucket in sorted(modes):
        statement = LOCK_BUCKET_EXCLUSIVE if modes[bucket] else LOCK_BUCKET_SHARED
        await conn.execute(statement, ERASURE_LOCK_CLASS, bucket)


async def erased_among(
    conn: asyncpg.Connection, customers: Iterable[Key], orders: Iterable[Key] = ()
) -> tuple[set[Key], set[Key]]:
    """Which of these customers and orders (by shop) were erased by customers/redact."""
    kinds, shops, ids = _columns(customers, orders)
    if not kinds:
        return set(), set()
    rows = await conn.fetch(ERASED_AMONG, kinds, shops, ids)
    erased: dict[str, set[Key]] = {"c": set(), "o": set()}
    for row in rows:
        erased[row["kind"]].add((row["shop_id"], row["id"]))
    return erased["c"], erased["o"]


async def remember_erased(
    conn: asyncpg.Connection, customers: Iterable[Key], orders: Iterable[Key], at: datetime
) -> None:
    """Keep the digests of erased customers and orders, so nothing brings them back."""
    kinds, shops, ids = _columns(customers, orders)
    if kinds:
        await conn.execute(REMEMBER_ERASED, kinds, shops, ids, at)


async def erase_segmenter_rows(
    conn: asyncpg.Connection, shop_id: int, customer_id: int, order_ids: Iterable[int]
) -> tuple[list[int], int]:
    """Delete the customer's state, orders, memberships, change history and data requests; the
    caller holds the customer's row lock. Returns the order ids deleted and the rows deleted."""
    orders = await conn.fetch(ERASE_ORDERS, shop_id, customer_id, list(order_ids))
    erased = len(orders)
    for statement in ERASE_SEGMENTER:
        status = await conn.execute(statement, shop_id, customer_id)
        erased += int(status.split()[-1])
    return [row["order_id"] for row in orders], erased


FORGET_CUSTOMERS = """
DELETE FROM customers c USING unnest($1::bigint[], $2::bigint[]) AS k (shop_id, customer_id)
WHERE c.shop_id = k.shop_id AND c.customer_id = k.customer_id
"""


async def forget_customers(conn: asyncpg.Connection, keys: Iterable[Key]) -> None:
    """Delete the rows of customers already erased (a writer that raced the erasure made them)."""
    pairs = sorted(keys)
    await conn.execute(FORGET_CUSTOMERS, [k[0] for k in pairs], [k[1] for k in pairs])


async def log_request(
    conn: asyncpg.Connection, kind: str, shop_id: int, rows_erased: int | None, at: datetime
) -> None:
    """Record that a privacy request was carried out (no personal data)."""
    await conn.execute(LOG_REQUEST, kind, shop_id, rows_erased, at)


async def record_data_request(
    conn: asyncpg.Connection,
    shop_id: int,
    customer_id: int,
    shopify_request_id: int | None,
    at: datetime,
    order_ids: Iterable[int] = (),
) -> None:
    """customers/data_request: the export waits for the shop to fetch it."""
    await conn.execute(
        RECORD_DATA_REQUEST, shop_id, customer_id, shopify_request_id, at, list(order_ids)
    )
    await log_request(conn, "data_requested", shop_id, None, at)


async def delete_shop(conn: asyncpg.Connection, domain: str, shop_id: int, at: datetime) -> None:
    """shop/redact: remember the domain as redacted and delete the shop with all it has.

    The caller holds the shop's exclusive lock, in a transaction of its own.
    """
    await conn.execute(REMEMBER_REDACTED_SHOP, domain, at)
    await conn.execute(DELETE_SHOP, shop_id)
    await log_request(conn, "shop_redacted", shop_id, None, at)


async def remember_redacted_shop(conn: asyncpg.Connection, domain: str, at: datetime) -> None:
    """A shop/redact of a domain no shop holds (already erased, or never here)."""
    await conn.execute(REMEMBER_REDACTED_SHOP, domain, at)


async def redactions_of(conn: asyncpg.Connection, domains: Iterable[str]) -> dict[str, datetime]:
    """When each of these domains' shops was erased by shop/redact (the latest), if it was."""
    rows = await conn.fetch(REDACTIONS_OF, list(domains))
    return {row["domain"]: row["redacted_at"] for row in rows}


async def redacted_shops_among(conn: asyncpg.Connection, domains: Iterable[str]) -> set[str]:
    """Which of these domains belong to shops erased by shop/redact."""
    rows = await conn.fetch(REDACTED_SHOPS_AMONG, list(domains))
    return {row["domain"] for row in rows}
