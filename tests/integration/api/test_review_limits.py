"""Review: the read key sits on storefronts (anyone can copy it), so a flood with it must not
spend the budget of the shop's admin token; and one shop's slow writes must not take every
database connection of the API."""

import asyncio
import time

import asyncpg
import httpx

from services.api.app import create_app
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.segmenter.storage import queries
from tests.integration.keys.support import keyed, served

DEADLINE = 10.0
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}
WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_review_limits_a_read_key_flood_leaves_the_admin_tokens_reads_alone(
    settings: Settings, shop: ShopCredentials
) -> None:
    tight = keyed(settings, rate_limit_read_per_second=0.01, rate_limit_read_burst=2)
    async with served(create_app(tight)) as url, httpx.AsyncClient(base_url=url) as http:
        lookups = [
            (await http.get("/v1/customers/1/segments", headers=bearer(shop.read_key))).status_code
            for _ in range(4)
        ]
        # The flood is limited, as before.
        assert lookups == [404, 404, 429, 429]
        # The merchant's own reads still go through: a bucket of the admin token's.
        listed = await http.get("/v1/segments", headers=bearer(shop.api_token))
        assert listed.status_code == 200, listed.text
        looked_up = await http.get("/v1/customers/1/segments", headers=bearer(shop.api_token))
        assert looked_up.status_code == 404
        # And the admin token is limited by its own bucket.
        again = await http.get("/v1/segments", headers=bearer(shop.api_token))
        assert again.status_code == 429


async def test_review_limits_one_shops_slow_writes_leave_other_shops_a_connection(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    """A segment write holds a pool connection for its whole backfill (seconds on a large
    shop): a shop's burst of them took every connection and stalled every other shop."""
    other = await create_shop(db, "other-shop.myshopify.com")
    small = keyed(settings, db_pool_max=3, api_writes_in_flight_per_shop=1)
    async with served(create_app(small)) as url, httpx.AsyncClient(base_url=url) as http:
        async with pool.acquire() as holder, holder.transaction():
            # The shop's writes wait on its lock as they would on a long backfill.
            await queries.lock_shop_exclusive(holder, shop.shop_id)
            writes = [
                asyncio.create_task(
                    http.post(
                        "/v1/segments",
                        json={"handle": f"s{n}", "name": "S", "conditions": VIP},
                        headers=bearer(shop.api_token),
                        timeout=DEADLINE,
                    )
                )
                for n in range(3)
            ]
            deadline = time.monotonic() + DEADLINE
            while sum(t.done() for t in writes) + await pool.fetchval(WAITING) < len(writes):
                assert time.monotonic() < deadline, "the writes neither waited nor answered"
                await asyncio.sleep(0.02)
            # Another shop still gets a connection.
            read = await asyncio.wait_for(
                http.get("/v1/segments", headers=bearer(other.api_token)), 3.0
            )
            assert read.status_code == 200, read.text
        answers = await asyncio.wait_for(asyncio.gather(*writes), DEADLINE)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 429, 429]
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
