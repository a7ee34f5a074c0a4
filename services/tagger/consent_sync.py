"""Writes one-click unsubscribes back to Shopify (customerEmailMarketingConsentUpdate to
UNSUBSCRIBED), so the merchant's other tools stop mailing too; never loses one.

Each unsynced override is leased (its due time moved past the call), then written; Shopify's
acceptance marks it synced, and anything else (Shopify down or throttled beyond the client's
bound, the shop not connected, userErrors) makes it due again later with backoff, however
often. Our own override already keeps journey mail from the customer meanwhile.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from services.common.backoff import Backoff
from services.common.settings import Settings
from services.segmenter.runtime.health import ComponentHealth
from services.tagger.connections import ShopClients
from services.tagger.rounds import run_rounds
from services.tagger.shopify.errors import ShopifyAuthError, ShopifyError

logger = logging.getLogger(__name__)

UNSUBSCRIBED = "UNSUBSCRIBED"
# Long enough for the client's own retries; an override still leased after it is taken again.
LEASE = timedelta(minutes=5)

TAKE_UNSYNCED = """
UPDATE consent_overrides SET sync_due_at = $2
WHERE (shop_id, customer_id) IN (
    SELECT shop_id, customer_id FROM consent_overrides
    WHERE synced_at IS NULL AND sync_due_at <= $1
    ORDER BY sync_due_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING shop_id, customer_id, unsubscribed_at, sync_attempts
"""
MARK_SYNCED = """
UPDATE consent_overrides SET synced_at = $3, sync_error = NULL
WHERE shop_id = $1 AND customer_id = $2
"""
MARK_RETRY = """
UPDATE consent_overrides
SET sync_due_at = $3, sync_attempts = sync_attempts + 1, sync_error = $4
WHERE shop_id = $1 AND customer_id = $2
"""


class ConsentWriteback:
    """The write-back loop; `poke()` makes it look now (after an unsubscribe)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        clients: ShopClients,
        health: ComponentHealth,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._clients = clients
        self._health = health
        self._clock = clock
        self._backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """Write back until `stop` is set."""
        await run_rounds(self.round, stop, self._health, self._settings.tagger_interval_seconds)

    async def round(self) -> bool:
        """One pass over the due overrides; True if there were any."""
        now = self._clock()
        rows = await self._pool.fetch(
            TAKE_UNSYNCED, now, now + LEASE, self._settings.tagger_batch_size
        )
        for row in rows:
            await self._write(row, now)
        return bool(rows)

    async def _write(self, row: asyncpg.Record, now: datetime) -> None:
        shop_id, customer_id = row["shop_id"], row["customer_id"]
        error: str | None = None
        client = await self._clients.get(shop_id)
        if client is None:
            error = "the shop is not connected"
        else:
            try:
                result = await client.set_email_consent(
                    customer_id, UNSUBSCRIBED, updated_at=row["unsubscribed_at"]
                )
            except ShopifyAuthError:
                self._clients.forget(shop_id)
                error = "Shopify refused the shop's token"
            except ShopifyError as exc:
                error = f"Shopify: {type(exc).__name__}"
            else:
                if result.user_errors:
                    messages = "; ".join(e.message for e in result.user_errors)
                    error = f"userErrors: {messages}"[:300]
        if error is None:
            await self._pool.execute(MARK_SYNCED, shop_id, customer_id, self._clock())
            return
        delay = self._backoff.delay(row["sync_attempts"] + 1)
        await self._pool.execute(
            MARK_RETRY, shop_id, customer_id, now + timedelta(seconds=delay), error
        )
        # Shopify's words stay in the row (the API shows them); the log gets the kind only.
        logger.warning(
            "consent write-back failed; retried later", extra={"reason": error.split(":")[0]}
        )
