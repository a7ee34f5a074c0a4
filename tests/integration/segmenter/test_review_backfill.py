"""Review: a backfill chunk evaluates time-reading rules at its own time, not at the time the
edit began, so it never undoes what a batch decided since (an exit and a re-entry). And two
attacks that held: a holder stalled past its lease, and two members racing for a lease."""

import asyncio
import time
from datetime import timedelta

import asyncpg
import httpx
import pytest

from services.api.app import create_app
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage.backfill import BackfillOptions, resume_abandoned
from services.segmenter.storage.segments import create_segment
from tests.integration.keys.support import keyed, served
from tests.integration.segmenter.test_backfill_chunks import (
    CHUNK,
    DEADLINE,
    VIP,
    Pause,
    RunnerDied,
    changes_of,
    dies_after,
    fill,
    from_scratch,
    members,
    net_members,
    spec,
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


async def test_review_backfill_a_holder_whose_lease_ran_out_stops_and_the_claimer_finishes(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    await fill(db, shop.shop_id)
    pause = Pause(after=2)
    async with pool.acquire() as conn:
        running = asyncio.create_task(
            create_segment(
                conn,
                shop.shop_id,
                spec(VIP),
                NOW,
                BackfillOptions(chunk=CHUNK, between_chunks=pause),
            )
        )
        await pause.reached()
        # The holder is alive but stalled past its lease: the segmenter takes the backfill
        # over, and is itself between chunks when the holder wakes up.
        await db.execute("UPDATE segments SET backfill_lease_until = now() - interval '1 second'")
        claimer = Pause(after=1)
        resumed = asyncio.create_task(
            resume_abandoned(
                pool, lambda: NOW, BackfillOptions(chunk=CHUNK, between_chunks=claimer)
            )
        )
        await claimer.reached()
        pause.go_on.set()
        created = await asyncio.wait_for(running, DEADLINE)
        assert created is not None and not created[1].complete  # it stopped at its next chunk
        claimer.go_on.set()
        assert await asyncio.wait_for(resumed, DEADLINE) == 1
    segment_id = created[0]
    expected = await from_scratch(db, shop.shop_id, VIP)
    assert await members(db, segment_id) == expected
    assert net_members(await changes_of(db, segment_id)) == expected  # each change once


async def test_review_backfill_two_members_racing_for_an_abandoned_backfill_run_it_once(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    await fill(db, shop.shop_id)
    async with pool.acquire() as conn:
        with pytest.raises(RunnerDied):
            await create_segment(
                conn,
                shop.shop_id,
                spec(VIP),
                NOW,
                BackfillOptions(chunk=CHUNK, between_chunks=dies_after(2)),
            )
    await db.execute("UPDATE segments SET backfill_lease_until = now() - interval '1 second'")
    options = BackfillOptions(chunk=CHUNK)
    ran = await asyncio.wait_for(
        asyncio.gather(*(resume_abandoned(pool, lambda: NOW, options) for _ in range(2))),
        DEADLINE,
    )
    assert sum(ran) == 1
    segment_id = await db.fetchval("SELECT id FROM segments WHERE handle = 'vip'")
    expected = await from_scratch(db, shop.shop_id, VIP)
    assert await members(db, segment_id) == expected
    assert net_members(await changes_of(db, segment_id)) == expected
