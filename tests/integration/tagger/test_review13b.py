"""Review 13b: sequences that break the reconciler's shop tasks and late bulk operations,
against the Shopify stand-in over real HTTP and a real PostgreSQL (each fails on the code
it was written against)."""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from services.segmenter.runtime.health import ComponentHealth
from services.segmenter.storage.segments import SegmentSpec, update_segment
from services.tagger.connections import ShopClients
from services.tagger.metrics import TaggerMetrics
from services.tagger.reconciler import TagReconciler
from tests.integration.tagger.test_review13_tags import _gate, _second_shop
from tests.integration.tagger.test_tag_reconciler import (
    NOW,
    VIP_TAG,
    Tagging,
    vip_rule,
    vip_segment,
)

pytest_plugins = ["tests.integration.tagger.test_tag_reconciler"]


def _reconciler(
    t: Tagging, clients: ShopClients | None = None, **settings: object
) -> TagReconciler:
    return TagReconciler(
        t.settings.model_copy(update=settings),
        t.reconciler._pool,
        clients or t.clients,
        TaggerMetrics.create(CollectorRegistry()),
        ComponentHealth(),
        rng=random.Random(7),
    )


async def _until(condition: Callable[[], Awaitable[bool]], seconds: float) -> None:
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.05)


async def _late_bulk_add(t: Tagging, reconciler: TagReconciler, customers: list[int]) -> None:
    """A bulk tagsAdd for `customers` that Shopify still runs when polling gives up: recorded
    in tag_bulk_operations, the customers waiting in the bulk lane."""
    fault = {"kind": "bulk", "delay_ms": 2500}
    assert (await t.http.post(f"/_standin/shops/{t.domain}/faults", json=fault)).is_success
    await t.mark(*customers, bulk=True)
    await reconciler.round()
    assert await t.db.fetchval("SELECT count(*) FROM tag_bulk_operations") == 1
    assert await t.tags_on_shopify(customers[0]) == []  # not applied yet


async def test_review13b_a_live_leave_during_a_late_bulk_add_leaves_no_stale_tag(
    tagging: Tagging,
) -> None:
    """Finding: a customer of a late bulk tagsAdd leaves the segment and a live change marks
    them. The live path sees the entry `adding`, sends tagsRemove (nothing to remove yet),
    records `removed` and finishes the work row. Then Shopify runs the operation and adds the
    tag; settling the late operation changes only entries still `adding` and makes due only
    queued rows (there are none), so the tag stays on a non-member for good, and the ledger
    (`removed` while Shopify shows it) will even read it as the merchant's on re-entry."""
    t = tagging
    customers = list(range(1, 26))
    await t.customers(dict.fromkeys(customers, "1500"), {})
    segment_id = await vip_segment(t)
    reconciler = _reconciler(
        t, tagger_bulk_poll_timeout_seconds=0.3, tagger_bulk_repoll_seconds=0.2
    )
    await _late_bulk_add(t, reconciler, customers)
    # Customer 1 leaves (here everyone does: the threshold moves above their totals), and a
    # live change of customer 1 comes in while Shopify still runs the operation.
    spec = SegmentSpec("vip", "VIP", "", vip_rule(5000), VIP_TAG)
    async with t.db.transaction():
        await update_segment(t.db, t.shop_id, segment_id, spec, NOW)
    await t.mark(1)
    await reconciler.round()
    # Settle everything: the operation ends, a later poll reads it, the bulk lane goes on.

    async def settled() -> bool:
        await reconciler.round()
        work = await t.db.fetchval("SELECT count(*) FROM tag_work")
        late = await t.db.fetchval("SELECT count(*) FROM tag_bulk_operations")
        return bool(work == 0 and late == 0)

    await _until(settled, 30)
    assert await t.tags_on_shopify(2) == []  # the others were untagged after the operation
    assert await t.tags_on_shopify(1) == [], (
        "a stale VIP outlived the membership",
        await t.ledger(1),
    )


async def test_review13b_one_shops_unreadable_token_with_a_late_bulk_op_does_not_stop_others(
    tagging: Tagging,
) -> None:
    """Finding: `_late_bulk` calls ShopClients.get outside `_shop`'s guard. A shop with a
    late bulk operation whose sealed token no longer opens (key gone, damaged row) raises
    SealingError out of lane_batch: round() raises, and in run() the shop task sets
    `_failure`, so the whole reconciler stops tagging every shop (the fix for the same fault
    on the ordinary path, review 13, does not cover this one)."""
    a = tagging
    await a.customers({1: "1500"}, {})
    await vip_segment(a)
    broken = await _second_shop(a)
    customers = list(range(100, 125))
    await broken.customers(dict.fromkeys(customers, "1500"), {})
    await vip_segment(broken)
    first = _reconciler(a, tagger_bulk_poll_timeout_seconds=0.3, tagger_bulk_repoll_seconds=0.0)
    await _late_bulk_add(broken, first, customers)
    await a.db.execute(
        "UPDATE shop_connections SET key_id = 'gone' WHERE shop_id = $1", broken.shop_id
    )
    # A replica (or a restart) that has not cached the broken shop's client.
    fresh = ShopClients(a.settings, a.reconciler._pool, rng=random.Random(8))
    try:
        replica = _reconciler(a, fresh, tagger_interval_seconds=0.1)
        await a.mark(1)
        stop = asyncio.Event()
        task = asyncio.create_task(replica.run(stop))
        try:

            async def tagged() -> bool:
                assert not task.done(), f"the reconciler stopped: {task.exception()!r}"
                return await a.tags_on_shopify(1) == ["VIP"]

            await _until(tagged, 10)
        finally:
            stop.set()
            outcome = await asyncio.gather(asyncio.wait_for(task, 30), return_exceptions=True)
        assert list(outcome) == [None], outcome
    finally:
        await fresh.close()


async def test_review13b_a_late_bulk_op_shopify_no_longer_knows_does_not_stop_the_tagger(
    tagging: Tagging,
) -> None:
    """Finding: a recorded late operation that Shopify answers `node: null` for (gone: older
    than Shopify keeps them, the app reinstalled, a wrong id) makes BulkRunner._poll return
    `{}`, which is not "running", so `_result` reads `operation["status"]`: a KeyError, not a
    ShopifyError, escapes `_late_bulk`, the shop task records it as `_failure`, and run()
    stops the reconciler for every shop. Its customers should go on (to the single path)."""
    t = tagging
    customers = list(range(1, 26))
    await t.customers({**dict.fromkeys(customers, "1500"), 99: "1500"}, {})
    await vip_segment(t)
    first = _reconciler(t, tagger_bulk_poll_timeout_seconds=0.3, tagger_bulk_repoll_seconds=0.0)
    await _late_bulk_add(t, first, customers)
    # Shopify no longer knows the operation: the same row, an id its node() answers null for.
    await t.db.execute(
        "UPDATE tag_bulk_operations SET operation_id = 'gid://shopify/BulkOperation/987654321'"
    )
    reconciler = _reconciler(t, tagger_interval_seconds=0.1, tagger_bulk_repoll_seconds=0.1)
    await t.mark(99)  # a live change beside it
    stop = asyncio.Event()
    task = asyncio.create_task(reconciler.run(stop))
    try:

        async def drained() -> bool:
            assert not task.done(), f"the reconciler stopped: {task.exception()!r}"
            work = await t.db.fetchval("SELECT count(*) FROM tag_work")
            late = await t.db.fetchval("SELECT count(*) FROM tag_bulk_operations")
            return bool(work == 0 and late == 0)

        await _until(drained, 15)
    finally:
        stop.set()
        outcome = await asyncio.gather(asyncio.wait_for(task, 30), return_exceptions=True)
    assert list(outcome) == [None], outcome
    assert await t.tags_on_shopify(99) == ["VIP"]


async def test_review13b_a_live_reentry_during_a_late_bulk_remove_keeps_the_tag(
    tagging: Tagging,
) -> None:
    """Finding (the mirror of the stale tag): a customer of a late bulk tagsRemove comes back
    into the segment and a live change marks them. The live path sees `removing`, sends
    tagsAdd, records `added` and finishes the row; then Shopify runs the operation and takes
    the tag off. Settling it changes only entries still `removing`: a member stays untagged."""
    t = tagging
    customers = list(range(1, 26))
    await t.customers(dict.fromkeys(customers, "1500"), {})
    segment_id = await vip_segment(t)
    reconciler = _reconciler(
        t, tagger_bulk_poll_timeout_seconds=0.3, tagger_bulk_repoll_seconds=0.2
    )
    await t.mark(*customers, bulk=True)
    await reconciler.round()
    assert await t.tags_on_shopify(1) == ["VIP"]
    # Everyone leaves; the bulk tagsRemove is still running when polling gives up.
    for threshold in (5000, 1000):
        spec = SegmentSpec("vip", "VIP", "", vip_rule(threshold), VIP_TAG)
        async with t.db.transaction():
            await update_segment(t.db, t.shop_id, segment_id, spec, NOW)
        if threshold == 5000:
            fault = {"kind": "bulk", "delay_ms": 2500}
            answer = await t.http.post(f"/_standin/shops/{t.domain}/faults", json=fault)
            assert answer.is_success
            await t.mark(*customers, bulk=True)
            await reconciler.round()
            assert await t.db.fetchval("SELECT count(*) FROM tag_bulk_operations") == 1
    # Back in (the threshold as before), and a live change of customer 1 comes in.
    await t.mark(1)
    await reconciler.round()

    async def settled() -> bool:
        await reconciler.round()
        work = await t.db.fetchval("SELECT count(*) FROM tag_work")
        late = await t.db.fetchval("SELECT count(*) FROM tag_bulk_operations")
        return bool(work == 0 and late == 0)

    await _until(settled, 30)
    assert await t.tags_on_shopify(2) == ["VIP"]  # re-tagged after the operation
    assert await t.tags_on_shopify(1) == ["VIP"], (
        "a member lost the tag to a late removal",
        await t.ledger(1),
    )


async def test_review13b_a_live_change_during_a_bulk_op_is_not_deferred_to_the_repoll(
    tagging: Tagging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: a live change of a customer whose bulk batch is in hand (the live mark bumps
    the version, bulk becomes false) is held by the renewed bulk lease for the whole poll,
    and when the operation turns late, PUT_BACK (no version check) sets the live row's
    due_at to the re-poll time (30 s by default): the live change waits on a bulk
    operation it has nothing to do with, instead of being due at once like any row marked
    again while worked on."""
    t = tagging
    customers = list(range(1, 26))
    await t.customers(dict.fromkeys(customers, "1500"), {})
    await vip_segment(t)
    reconciler = _reconciler(t, tagger_bulk_poll_timeout_seconds=0.3)
    fault = {"kind": "bulk", "delay_ms": 2500}
    assert (await t.http.post(f"/_standin/shops/{t.domain}/faults", json=fault)).is_success
    gate = await _gate(monkeypatch, t.clients, t.shop_id, "run_bulk_tags")
    await t.mark(*customers, bulk=True)
    batch = asyncio.create_task(reconciler.round())
    await asyncio.wait_for(gate.entered.wait(), 10)
    await t.mark(1)  # a live change (an order, say) while the bulk batch is in hand
    gate.release.set()
    await asyncio.wait_for(batch, 20)
    assert await t.db.fetchval("SELECT count(*) FROM tag_bulk_operations") == 1
    row = await t.db.fetchrow(
        "SELECT bulk, due_at <= now() AS due, leased_until FROM tag_work WHERE customer_id = 1"
    )
    assert row is not None and not row["bulk"]
    assert row["due"] and row["leased_until"] is None, dict(row)
