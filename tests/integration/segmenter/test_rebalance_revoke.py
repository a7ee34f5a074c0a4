"""Rebalances at the worst moments, with real `segflow segmenter` processes in one group.

1. A member is asked to give up its partitions while a batch is in hand: the batch is held
   inside its transaction by a row lock this test owns, while a second member joins.
2. A member is SIGKILLed while another runs: inside a batch's transaction, or right after
   the batch's database commit and before its offsets are committed.

Either way the end state is the one a single process would reach: exact totals, one entry per
customer, no change published under two ids.
"""

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.storage.segments import SegmentSpec, create_segment
from tests.helpers import drain_topic
from tests.integration.segmenter.processes import (
    SegmenterProcess,
    order_event,
    poll,
    produce,
    segmenter_env,
)

CUSTOMERS = 24
FIRST = 6000
ROUNDS = 3
# $300 a round: the customer enters during the second round and never leaves.
OVER_500 = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 500}]}


def round_of_orders(shop: str, round_: int) -> list[tuple[bytes, bytes]]:
    return [
        order_event(shop, 100_000 * (round_ + 1) + n, FIRST + n, "300.00") for n in range(CUSTOMERS)
    ]


async def processed(db: asyncpg.Connection, expected: int) -> bool:
    done = await db.fetchval("SELECT count(*) FROM processed_events")
    unpublished = await db.fetchval(
        "SELECT count(*) FROM segment_changes WHERE published_at IS NULL"
    )
    return bool(done == expected and unpublished == 0)


async def lock_waiters(db: asyncpg.Connection) -> bool:
    return bool(await db.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))


async def consumer_status(member: SegmenterProcess) -> dict[str, object]:
    member.assert_alive()
    answer = await member.readyz()
    consumer = answer[1].get("consumer") if answer is not None else None
    return consumer if isinstance(consumer, dict) else {}


async def partitions_of(member: SegmenterProcess) -> list[int] | None:
    """The member's assigned partitions once it has some (for `poll`)."""
    found = (await consumer_status(member)).get("partitions")
    return list(found) if isinstance(found, list) and found else None


async def assert_single_process_result(settings: Settings, db: asyncpg.Connection) -> None:
    rows = await db.fetch("SELECT customer_id, orders_count, total_spent FROM customers")
    assert len(rows) == CUSTOMERS
    assert {(r["orders_count"], str(r["total_spent"])) for r in rows} == {(ROUNDS, "900.00")}
    changes = await db.fetch("SELECT customer_id, change FROM segment_changes")
    assert sorted(r["customer_id"] for r in changes) == [FIRST + n for n in range(CUSTOMERS)]
    assert {r["change"] for r in changes} == {"entered"}
    records = await drain_topic(
        settings.kafka_bootstrap_servers or "", settings.topic_segment_changes
    )
    ids: dict[str, set[str]] = defaultdict(set)
    for record in records:
        change = json.loads(record.value)
        ids[change["customer_id"]].add(change["change_id"])
    assert len(ids) == CUSTOMERS
    assert all(len(found) == 1 for found in ids.values())
    dead = await drain_topic(settings.kafka_bootstrap_servers or "", settings.topic_dead_letter)
    assert dead == []


@pytest.fixture
async def segment(db: asyncpg.Connection, shop: ShopCredentials) -> None:
    async with db.transaction():
        await create_segment(
            db, shop.shop_id, SegmentSpec("big", "Big", "", OVER_500, []), datetime.now(UTC)
        )


@pytest.mark.usefixtures("segment")
async def test_a_member_revoked_with_a_batch_in_hand_commits_it_before_letting_go(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    # A longer session than the other tests': once, with three suites sharing two cores, a
    # run counted duplicates, as if A had been dropped from the group while it waited for its
    # batch; the test asserts the undisturbed case, so it gives heartbeats some margin.
    session = {"SEGFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000"}
    a = SegmenterProcess(segmenter_env(settings, **session), tmp_path / "a.log")
    b_env = segmenter_env(settings, **session)
    b = SegmenterProcess(b_env, tmp_path / "b.log")
    blocker = await asyncpg.connect(settings.database_url)
    a.start()
    try:
        assert await poll(lambda: partitions_of(a), 30, "A's partitions") == [0, 1, 2]
        await produce(settings, round_of_orders(shop.domain, 0))
        await poll(lambda: processed(db, CUSTOMERS), 30, "the first round")

        # The next batch that touches this customer waits, inside its transaction, for us.
        await blocker.execute("BEGIN")
        await blocker.execute("SELECT 1 FROM customers WHERE customer_id = $1 FOR UPDATE", FIRST)
        await produce(settings, round_of_orders(shop.domain, 1))
        await poll(lambda: lock_waiters(db), 15, "A's batch to wait on the lock")
        b.start()

        async def rebalancing() -> bool:
            return (await consumer_status(a)).get("rebalancing") is True

        await poll(rebalancing, 30, "A to be asked for its partitions")
        # The partitions stay with A while its batch is in hand.
        assert (await consumer_status(b)).get("partitions") in ([], None)
        assert await lock_waiters(db)
        await blocker.execute("ROLLBACK")

        async def shared() -> bool:
            # Each reports its own view: A's old assignment until its revoke completes.
            found_a, found_b = await partitions_of(a), await partitions_of(b)
            return bool(found_a and found_b and sorted(found_a + found_b) == [0, 1, 2])

        await poll(shared, 30, "the partitions shared between A and B")
        await produce(settings, round_of_orders(shop.domain, 2))
        await poll(lambda: processed(db, ROUNDS * CUSTOMERS), 30, "every round")
        # A committed its batch before B got the partitions: nobody saw an event twice.
        for member in (a, b):
            duplicates = await member.metric("segflow_segmenter_events_total", outcome="duplicate")
            assert duplicates == 0, member.log_tail()
    finally:
        await blocker.close()
        codes = [await b.stop(), await a.stop()]
    assert codes == [0, 0], a.log_tail() + b.log_tail()
    await assert_single_process_result(settings, db)


@pytest.mark.usefixtures("segment")
@pytest.mark.parametrize("moment", ["inside_the_transaction", "after_the_database_commit"])
async def test_a_member_killed_with_sigkill_while_another_runs_loses_and_doubles_nothing(
    moment: str,
    settings: Settings,
    shop: ShopCredentials,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    a = SegmenterProcess(segmenter_env(settings), tmp_path / "a.log")
    b_overrides: dict[str, str] = {}
    if moment == "after_the_database_commit":
        # Its second batch of the next round: the database has it, Kafka's offsets do not.
        b_overrides["SEGFLOW_CRASH_AT"] = "after_db_commit:2"
    b = SegmenterProcess(segmenter_env(settings, **b_overrides), tmp_path / "b.log")
    blocker = await asyncpg.connect(settings.database_url)
    a.start()
    b.start()
    try:

        async def shared() -> tuple[list[int], list[int]] | None:
            # A, started first, may report all three until B's join moves some.
            found_a, found_b = await partitions_of(a), await partitions_of(b)
            if found_a and found_b and sorted(found_a + found_b) == [0, 1, 2]:
                return found_a, found_b
            return None

        found_a, found_b = await poll(shared, 30, "the partitions shared between A and B")
        first = round_of_orders(shop.domain, 0)
        if moment == "inside_the_transaction":
            # One customer on B's partitions comes first, so B's next batch waits on its row.
            customers_of = await _customers_by_partition(settings, shop.domain)
            held = customers_of[found_b[0]][0]
            await db.execute(
                "INSERT INTO customers (shop_id, customer_id) VALUES ($1, $2)", shop.shop_id, held
            )
            await blocker.execute("BEGIN")
            await blocker.execute("SELECT 1 FROM customers WHERE customer_id = $1 FOR UPDATE", held)
            await produce(settings, first)
            await poll(lambda: lock_waiters(db), 15, "B's batch to wait on the lock")
            assert await b.kill() == -9
            await blocker.execute("ROLLBACK")
        else:
            await produce(settings, first)
            code = await poll(lambda: _exit_code(b), 30, "B to kill itself")
            assert code == -9, b.log_tail()
        await poll(lambda: partitions_of(a), 30, "A to take B's partitions")

        async def a_has_everything() -> bool:
            return sorted(await partitions_of(a) or []) == [0, 1, 2]

        await poll(a_has_everything, 30, "A to own every partition")
        for round_ in range(1, ROUNDS):
            await produce(settings, round_of_orders(shop.domain, round_))
        await poll(lambda: processed(db, ROUNDS * CUSTOMERS), 40, "every round")
    finally:
        await blocker.close()
        await b.stop()
        code_a = await a.stop()
    assert code_a == 0, a.log_tail()
    await assert_single_process_result(settings, db)


async def _exit_code(member: SegmenterProcess) -> int | None:
    return member.process.poll()


async def _customers_by_partition(settings: Settings, shop: str) -> dict[int, list[int]]:
    """Which partition each customer's key lands on, as the producer's partitioner decides."""
    from aiokafka.partitioner import DefaultPartitioner

    partitioner = DefaultPartitioner()
    partitions = list(range(settings.topic_partitions))
    found: dict[int, list[int]] = defaultdict(list)
    for n in range(CUSTOMERS):
        key, _ = order_event(shop, 0, FIRST + n, "0")
        found[partitioner(key, partitions, partitions)].append(FIRST + n)
    return found
