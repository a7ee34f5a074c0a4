"""Review: a backfill chunk evaluates time-reading rules at its own time, not at the time the
edit began, so it never undoes what a batch decided since (an exit and a re-entry)."""

import asyncio
import time
from datetime import timedelta

import asyncpg
import httpx

from services.api.app import create_app
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
from tests.integration.keys.support import keyed, served
from tests.integration.segmenter.test_backfill_chunks import (
    CHUNK,
    DEADLINE,
    changes_of,
    fill,
    members,
)
from tests.unit.segmenter.events import NOW, order, shopify_event

LATER = NOW + timedelta(hours=1)
LAPSED = {"all": [{"name": "days_since_last_order", "operator": "greater_than", "value": 90}]}
# 90 whole days ago at NOW, 91 an hour later: the rule's result flips in between.
PLACED = NOW - timedelta(days=91) + timedelta(minutes=30)
HELD = 300  # a customer of a later chunk, whose row lock the test holds
CUSTOMER = 400  # beyond it: reached after the batch below
WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


async def until_waiting(pool: asyncpg.Pool) -> None:
    deadline = time.monotonic() + DEADLINE
    while await pool.fetchval(WAITING) == 0:
        assert time.monotonic() < deadline, "the backfill never reached the held customer"
        await asyncio.sleep(0.02)


async def test_review_backfill_a_chunk_does_not_undo_a_later_batchs_time_reading_result(
    db: asyncpg.Connection, pool: asyncpg.Pool, settings: Settings, shop: ShopCredentials
) -> None:
    await fill(db, shop.shop_id)
    clock = [NOW]
    app = create_app(keyed(settings, backfill_chunk_size=CHUNK), clock=lambda: clock[0])
    auth = {"Authorization": f"Bearer {shop.api_token}"}
    body = {"handle": "lapsed", "name": "Lapsed", "conditions": LAPSED}
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=DEADLINE) as http:
        async with pool.acquire() as holder:
            held = holder.transaction()
            await held.start()
            await holder.execute(
                "SELECT 1 FROM customers WHERE shop_id = $1 AND customer_id = $2 FOR UPDATE",
                shop.shop_id,
                HELD,
            )
            created = asyncio.create_task(http.post("/v1/segments", json=body, headers=auth))
            await until_waiting(pool)
            # An hour on, a batch gives the customer an order placed 91 days before: it is
            # lapsed now, and enters.
            clock[0] = LATER
            payload = order(1, "10.00", placed=PLACED, customer=CUSTOMER)
            event = ShopEvent(shop.shop_id, shopify_event("orders/create", payload, event_id="o1"))
            async with pool.acquire() as conn, conn.transaction():
                outcome = await apply_events(conn, [event], RuleBook(), LATER)
            assert [(c.customer_id, c.change) for c in outcome.changes] == [(CUSTOMER, "entered")]
            await held.rollback()
            answer = await asyncio.wait_for(created, DEADLINE)
    assert answer.status_code == 201, answer.text
    segment_id = int(answer.json()["id"])
    assert CUSTOMER in await members(db, segment_id)
    changes = [
        (r["change"], r["cause"])
        for r in await changes_of(db, segment_id)
        if r["customer_id"] == CUSTOMER
    ]
    assert changes == [("entered", "event")]


def test_review_backfill_placed_flips_between_now_and_later() -> None:
    """The premise: 90 whole days at NOW, 91 at LATER."""
    day = timedelta(days=1)
    assert ((NOW - PLACED) // day, (LATER - PLACED) // day) == (90, 91)
