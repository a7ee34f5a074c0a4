"""Shops' Admin API connections: stored sealed by `segflow shops connect`, opened as clients.

The token is checked with a cheap query before it is stored (the same query reads the shop's
IANA time zone, kept on `shops` for journeys' quiet hours), and the webhook subscriptions
segflow reads are registered (existing ones kept). A shop connected (again) has every member
of a tag-writing segment marked for the bulk lane, so its tags catch up with its segments.
"""

import random
from dataclasses import dataclass

import asyncpg

from services.common.sealing import Keyring, parse_keys, seal, unseal
from services.common.settings import Settings
from services.tagger import storage
from services.tagger.shopify.client import AdminClient
from services.tagger.shopify.metrics import ShopifyClientMetrics
from services.tagger.shopify.models import AccessCheck, EnsureResult
from services.tagger.shopify.transport import RetryPolicy

# The topics segflow reads (GraphQL enum names): orders, refunds, customers and their tags and
# consent, products, checkouts, and the end of bulk operations.
WEBHOOK_TOPICS = (
    "ORDERS_CREATE",
    "ORDERS_UPDATED",
    "ORDERS_PAID",
    "ORDERS_CANCELLED",
    "REFUNDS_CREATE",
    "CUSTOMERS_CREATE",
    "CUSTOMERS_UPDATE",
    "CUSTOMERS_DELETE",
    "CUSTOMER_TAGS_ADDED",
    "CUSTOMER_TAGS_REMOVED",
    "CUSTOMERS_EMAIL_MARKETING_CONSENT_UPDATE",
    "CUSTOMERS_PURCHASING_SUMMARY",
    "PRODUCTS_CREATE",
    "PRODUCTS_UPDATE",
    "CHECKOUTS_CREATE",
    "CHECKOUTS_UPDATE",
    "BULK_OPERATIONS_FINISH",
)

CONNECTION = "SELECT * FROM shop_connections WHERE shop_id = $1"
SAVE_CONNECTION = """
INSERT INTO shop_connections (shop_id, admin_token_sealed, key_id, api_version, admin_url,
    webhook_topics, respect_manual_removals)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (shop_id) DO UPDATE
SET admin_token_sealed = EXCLUDED.admin_token_sealed, key_id = EXCLUDED.key_id,
    api_version = EXCLUDED.api_version, admin_url = EXCLUDED.admin_url,
    webhook_topics = EXCLUDED.webhook_topics,
    respect_manual_removals = EXCLUDED.respect_manual_removals, connected_at = now()
"""
# Read again on every connect: a merchant may have changed the shop's zone since.
SAVE_ZONE = "UPDATE shops SET iana_timezone = $2 WHERE id = $1"
# Every customer in a segment with an add_tag or remove_tag action.
TAGGED_MEMBERS = """
SELECT DISTINCT m.customer_id FROM memberships m JOIN segments s ON s.id = m.segment_id
WHERE m.shop_id = $1 AND EXISTS (
    SELECT 1 FROM jsonb_array_elements(s.actions) a
    WHERE a ->> 'name' IN ('add_tag', 'remove_tag')
)
"""


def token_context(shop_id: int) -> str:
    """What a sealed admin token is bound to: its shop (a copied row does not open)."""
    return f"shop:{shop_id}:admin_token"


def keyring_of(settings: Settings) -> Keyring:
    """The sealing keys; SealingError naming SEGFLOW_SEALING_KEYS when they are missing."""
    keys = settings.sealing_keys
    return parse_keys(keys.get_secret_value() if keys is not None else None)


@dataclass(frozen=True)
class Connected:
    """What `connect_shop` found and did."""

    access: AccessCheck
    webhooks: EnsureResult | None
    marked: int


async def connect_shop(
    conn: asyncpg.Connection,
    settings: Settings,
    shop_id: int,
    domain: str,
    admin_token: str,
    *,
    admin_url: str | None = None,
    callback_url: str | None = None,
    respect_manual_removals: bool = True,
) -> Connected:
    """Check the token (and read the shop's time zone), register the webhooks (with a callback
    URL), store the token sealed and the zone, and mark the shop's tagged members for the bulk
    lane. Raises ShopifyError on a bad token."""
    keyring = keyring_of(settings)
    async with AdminClient(domain, admin_token, settings.shopify_api_version, admin_url) as client:
        access = await client.check_access()
        webhooks = None
        if callback_url:
            webhooks = await client.ensure_webhook_subscriptions(callback_url, WEBHOOK_TOPICS)
    sealed, key_id = seal(keyring, admin_token, token_context(shop_id))
    topics = [s.topic for s in (*webhooks.kept, *webhooks.created)] if webhooks is not None else []
    async with conn.transaction():
        await conn.execute(
            SAVE_CONNECTION,
            shop_id,
            sealed,
            key_id,
            settings.shopify_api_version,
            admin_url,
            sorted(topics),
            respect_manual_removals,
        )
        await conn.execute(SAVE_ZONE, shop_id, access.iana_timezone)
        members = [r["customer_id"] for r in await conn.fetch(TAGGED_MEMBERS, shop_id)]
        await storage.mark_tag_work(conn, {(shop_id, c): True for c in members})
    return Connected(access, webhooks, len(members))


class ShopClients:
    """One AdminClient per connected shop, opened on first use (each with its own pacer)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        metrics: ShopifyClientMetrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._metrics = metrics
        self._rng = rng
        self._clients: dict[int, AdminClient] = {}
        self._closing: list[AdminClient] = []

    async def get(self, shop_id: int) -> AdminClient | None:
        """The shop's client, or None when the shop is not connected."""
        client = self._clients.get(shop_id)
        if client is not None:
            return client
        row = await self._pool.fetchrow(CONNECTION, shop_id)
        domain = await self._pool.fetchval("SELECT domain FROM shops WHERE id = $1", shop_id)
        if row is None or domain is None:
            return None
        if (found := self._clients.get(shop_id)) is not None:
            # Another lane of the shop made it while this one read the row: one client each.
            return found
        token = unseal(
            keyring_of(self._settings),
            bytes(row["admin_token_sealed"]),
            row["key_id"],
            token_context(shop_id),
        )
        client = AdminClient(
            domain,
            token,
            row["api_version"],
            row["admin_url"],
            metrics=self._metrics,
            rng=self._rng,
            policy=RetryPolicy(
                max_attempts=self._settings.shopify_retry_attempts,
                backoff_initial=self._settings.shopify_retry_initial_seconds,
                backoff_max=self._settings.shopify_retry_max_seconds,
            ),
        )
        self._clients[shop_id] = client
        return client

    def forget(self, shop_id: int) -> None:
        """Drop a shop's client (its token was refused): the next use reads the row again."""
        client = self._clients.pop(shop_id, None)
        if client is not None:
            # Closed later by `close`; in-flight calls of other tasks may still hold it.
            self._closing.append(client)

    async def close(self) -> None:
        """Close every client."""
        for client in [*self._clients.values(), *self._closing]:
            await client.aclose()
        self._clients.clear()
        self._closing.clear()
