"""A segment's backfill in chunks: events of its shop and of others commit between chunks,
a newer edit or a delete supersedes it, and a runner that died is resumed by the segmenter."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from services.common.metrics import new_registry
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.segmenter.domain.rules.compile_py import compile_conditions
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.scheduler import Scheduler
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage.backfill import BackfillOptions, resume_abandoned
from services.segmenter.storage.rows import facts_from_row
from services.segmenter.storage.segments import (
    SegmentSpec,
    create_segment,
    delete_segment,
    update_segment,
)
from tests.unit.segmenter.events import NOW, at, order, shopify_event

COUNT = 500
CHUNK = 50
# Every wait on the code under test is bounded: a batch stuck behind a backfill fails here.
DEADLINE = 10.0
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}
BIG = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 2000}]}

# Stored customers as an earlier evaluation left them (facts, evaluated_at), spent 0..2999.5.
FILL = """
INSERT INTO customers (shop_id, customer_id, orders_count, total_spent, evaluated_at)
SELECT $1, g, 1, (g * 7919 % 3000) + 0.5, $2 FROM generate_series(1, $3) AS g
"""


class Pause:
    """A between-chunks hook that stops the backfill after `after` chunks until released."""

    def __init__(self, after: int = 1) -> None:
        self.after = after
        self.chunks = 0
        self.paused = asyncio.Event()
        self.go_on = asyncio.Event()

    async def __call__(self) -> None:
        self.chunks += 1
        if self.chunks == self.after:
            self.paused.set()
            await self.go_on.wait()

    async def reached(self) -> None:
        await asyncio.wait_for(self.paused.wait(), DEADLINE)


class RunnerDied(Exception):
    pass


def dies_after(chunks: int) -> Callable[[], Awaitable[None]]:
    done = 0

    async def hook() -> None:
        nonlocal done
        done += 1
        if done == chunks:
            raise RunnerDied

    return hook


async def fill(db: asyncpg.Connection, shop_id: int, count: int = COUNT) -> None:
    await db.execute(FILL, shop_id, NOW, count)


def spec(conditions: dict[str, Any], handle: str = "vip") -> SegmentSpec:
    return SegmentSpec(handle, handle.upper(), "", conditions, [])


async def members(db: asyncpg.Connection, segment_id: int) -> set[int]:
    rows = await db.fetch("SELECT customer_id FROM memberships WHERE segment_id = $1", segment_id)
    return {row["customer_id"] for row in rows}


async def from_scratch(
    db: asyncpg.Connection, shop_id: int, conditions: dict[str, Any]
) -> set[int]:
    """The rule evaluated by the compiled Python evaluator over every stored customer now."""
    matches = compile_conditions(conditions)
    rows = await db.fetch("SELECT * FROM customers WHERE shop_id = $1", shop_id)
    return {r["customer_id"] for r in rows if not r["deleted"] and matches(facts_from_row(r), NOW)}


async def batch(pool: asyncpg.Pool, events: list[ShopEvent]) -> Any:
    async def apply() -> Any:
        async with pool.acquire() as conn, conn.transaction():
            return await apply_events(conn, events, RuleBook(), NOW)

    return await asyncio.wait_for(apply(), DEADLINE)


def big_order(shop_id: int, order_id: int, customer: int) -> ShopEvent:
    payload = order(order_id, "5000.00", placed=at(1), customer=customer)
    return ShopEvent(shop_id, shopify_event("orders/create", payload, event_id=f"e{order_id}"))


async def changes_of(db: asyncpg.Connection, segment_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT customer_id, segment_version, change, cause FROM segment_changes "
        "WHERE segment_id = $1 ORDER BY seq",
        segment_id,
    )
    return rows


def net_members(changes: list[asyncpg.Record]) -> set[int]:
    """Members as the outbox tells them: entries and exits alternate for each customer."""
    inside: set[int] = set()
    for row in changes:
        if row["change"] == "entered":
            assert row["customer_id"] not in inside, f"entered twice: {row}"
            inside.add(row["customer_id"])
        else:
            assert row["customer_id"] in inside, f"exited while out: {row}"
            inside.remove(row["customer_id"])
    return inside


async def test_batches_of_the_shop_and_of_others_commit_between_chunks(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    other = await create_shop(db, "other.myshopify.com")
    await fill(db, shop.shop_id)
    await fill(db, other.shop_id, 10)
    pause = Pause(after=1)
    options = BackfillOptions(chunk=CHUNK, between_chunks=pause)
    async with pool.acquire() as conn:
        running = asyncio.create_task(create_segment(conn, shop.shop_id, spec(VIP), NOW, options))
        await pause.reached()
        segment_id = await db.fetchval("SELECT id FROM segments WHERE handle = 'vip'")
        assert (
            await db.fetchval("SELECT backfill_after FROM segments WHERE id = $1", segment_id)
            == CHUNK
        )
        # One customer done already (10), one not reached yet (400), one new (9000), and
        # another shop's customer, in one batch as one partition would hold them.
        outcome = await batch(
            pool,
            [
                big_order(shop.shop_id, 1, 10),
                big_order(shop.shop_id, 2, 400),
                big_order(shop.shop_id, 3, 9000),
                big_order(other.shop_id, 4, 5),
            ],
        )
        assert len(outcome.applied) == 4
        alone = await batch(pool, [big_order(other.shop_id, 5, 6)])
        assert len(alone.applied) == 1
        pause.go_on.set()
        created = await asyncio.wait_for(running, DEADLINE)
    assert created is not None
    assert created[0] == segment_id

    expected = await from_scratch(db, shop.shop_id, VIP)
    assert {10, 400, 9000} <= expected
    assert await members(db, segment_id) == expected
    changes = await changes_of(db, segment_id)
    assert net_members(changes) == expected
    # The live batch entered 400 with the new segment; the chunk found nothing left to do.
    assert [(r["change"], r["cause"]) for r in changes if r["customer_id"] == 400] == [
        ("entered", "event")
    ]
    status = await db.fetchrow("SELECT * FROM segments WHERE id = $1", segment_id)
    assert status["backfill_version"] is None
    assert status["backfill_owner"] is None


async def test_an_edit_during_a_backfill_supersedes_it(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    await fill(db, shop.shop_id)
    pause = Pause(after=2)
    options = BackfillOptions(chunk=CHUNK, between_chunks=pause)
    async with pool.acquire() as conn:
        running = asyncio.create_task(create_segment(conn, shop.shop_id, spec(VIP), NOW, options))
        await pause.reached()
        segment_id = await db.fetchval("SELECT id FROM segments WHERE handle = 'vip'")
        async with pool.acquire() as editor:
            edited = await asyncio.wait_for(
                update_segment(
                    editor, shop.shop_id, segment_id, spec(BIG), NOW, BackfillOptions(chunk=CHUNK)
                ),
                DEADLINE,
            )
        assert edited is not None and edited.complete
        pause.go_on.set()
        created = await asyncio.wait_for(running, DEADLINE)
    assert created is not None
    assert not created[1].complete  # it stopped at its next chunk

    expected = await from_scratch(db, shop.shop_id, BIG)
    assert 0 < len(expected) < len(await from_scratch(db, shop.shop_id, VIP))
    assert await members(db, segment_id) == expected
    changes = await changes_of(db, segment_id)
    assert net_members(changes) == expected
    versions = [r["segment_version"] for r in changes]
    assert versions == sorted(versions), "a change of version 1 after one of version 2"
    assert 2 in versions


async def test_a_backfill_whose_runner_died_is_resumed_by_the_segmenter(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials, database_url: str
) -> None:
    await fill(db, shop.shop_id)
    options = BackfillOptions(chunk=CHUNK, between_chunks=dies_after(3))
    async with pool.acquire() as conn:
        with pytest.raises(RunnerDied):
            await create_segment(conn, shop.shop_id, spec(VIP), NOW, options)
    row = await db.fetchrow("SELECT * FROM segments WHERE handle = 'vip'")
    assert (row["backfill_version"], row["backfill_after"]) == (1, 3 * CHUNK)
    settings = Settings(database_url=database_url, backfill_chunk_size=CHUNK)
    metrics = SegmenterMetrics.create(new_registry())
    scheduler = Scheduler(settings, pool, None, metrics, lambda: NOW)

    # Its lease still runs: another runner may be at work, so nobody takes it over.
    assert await resume_abandoned(pool, lambda: NOW, BackfillOptions(chunk=CHUNK)) == 0
    await db.execute(
        "UPDATE segments SET backfill_lease_until = now() - interval '1 second' WHERE id = $1",
        row["id"],
    )
    await asyncio.wait_for(scheduler.run_once(), DEADLINE)

    expected = await from_scratch(db, shop.shop_id, VIP)
    assert await members(db, row["id"]) == expected
    assert net_members(await changes_of(db, row["id"])) == expected
    done = await db.fetchrow("SELECT * FROM segments WHERE id = $1", row["id"])
    assert done["backfill_version"] is None


async def test_a_runner_told_to_stop_hands_the_backfill_back_at_once(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    await fill(db, shop.shop_id)
    stop = asyncio.Event()

    async def stop_after_one() -> None:
        stop.set()

    async with pool.acquire() as conn:
        await create_segment(
            conn, shop.shop_id, spec(VIP), NOW, BackfillOptions(chunk=CHUNK, between_chunks=None)
        )
    # A resumed run that is stopped between chunks releases its lease for the next runner.
    await db.execute(
        "UPDATE segments SET backfill_version = 1, backfill_after = NULL, "
        "backfill_owner = gen_random_uuid(), backfill_lease_until = now() - interval '1 s'"
    )
    options = BackfillOptions(chunk=CHUNK, between_chunks=stop_after_one)
    assert await resume_abandoned(pool, lambda: NOW, options, stop) == 1
    row = await db.fetchrow("SELECT * FROM segments WHERE handle = 'vip'")
    assert (row["backfill_version"], row["backfill_after"]) == (1, CHUNK)
    assert await resume_abandoned(pool, lambda: NOW, BackfillOptions(chunk=CHUNK)) == 1
    assert (await db.fetchrow("SELECT * FROM segments WHERE id = $1", row["id"]))[
        "backfill_version"
    ] is None
    assert await members(db, row["id"]) == await from_scratch(db, shop.shop_id, VIP)


async def test_a_delete_during_a_backfill_exits_every_member_in_chunks(
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
        segment_id = await db.fetchval("SELECT id FROM segments WHERE handle = 'vip'")
        assert await members(db, segment_id)
        deleting = Pause(after=1)
        async with pool.acquire() as deleter:
            deleted = asyncio.create_task(
                delete_segment(
                    deleter,
                    shop.shop_id,
                    segment_id,
                    NOW,
                    BackfillOptions(chunk=CHUNK, between_chunks=deleting),
                )
            )
            await deleting.reached()
            # While its exits are written, batches no longer evaluate it: a member not
            # reached yet keeps its membership for the delete to end, and nobody enters.
            member = max(await members(db, segment_id))
            outcome = await batch(
                pool, [big_order(shop.shop_id, 7, member), big_order(shop.shop_id, 8, 9000)]
            )
            assert outcome.changes == []
            pause.go_on.set()
            created = await asyncio.wait_for(running, DEADLINE)
            assert created is not None and not created[1].complete
            deleting.go_on.set()
            exited = await asyncio.wait_for(deleted, DEADLINE)
    assert exited is not None and exited > 0
    assert await db.fetchval("SELECT count(*) FROM segments") == 0
    assert await db.fetchval("SELECT count(*) FROM memberships") == 0
    changes = await changes_of(db, segment_id)
    assert net_members(changes) == set()
    assert {r["cause"] for r in changes if r["change"] == "exited"} == {"segment_deleted"}
    assert sum(r["change"] == "exited" for r in changes) == exited


async def test_a_time_reading_rule_reschedules_each_chunk_it_backfills(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    await fill(db, shop.shop_id)
    rule = {"all": [{"name": "days_since_last_order", "operator": "greater_than", "value": 90}]}
    async with pool.acquire() as conn:
        await create_segment(conn, shop.shop_id, spec(rule), NOW, BackfillOptions(chunk=CHUNK))
    due = await db.fetchval(
        "SELECT count(*) FROM customers WHERE shop_id = $1 AND next_eval_at <= $2",
        shop.shop_id,
        NOW,
    )
    assert due == COUNT
