"""Issue 13: the reconciler's shop tasks, late bulk operations and stale bulk leases, against
the Shopify stand-in over real HTTP and a real PostgreSQL (each failed before its fix)."""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.segmenter.runtime.health import ComponentHealth
from services.tagger.metrics import TaggerMetrics
from services.tagger.reconciler import TagReconciler
from tests.integration.tagger.test_review13_tags import _gate, _second_shop
from tests.integration.tagger.test_tag_reconciler import Tagging, vip_segment

pytest_plugins = ["tests.integration.tagger.test_tag_reconciler"]


def _reconciler(
    t: Tagging, skew: timedelta = timedelta(0), **settings: Any
) -> tuple[TagReconciler, TaggerMetrics]:
    metrics = TaggerMetrics.create(CollectorRegistry())
    reconciler = TagReconciler(
        t.settings.model_copy(update=settings),
        t.reconciler._pool,
        t.clients,
        metrics,
        ComponentHealth(),
        clock=lambda: datetime.now(UTC) + skew,
        rng=random.Random(7),
    )
    return reconciler, metrics


@asynccontextmanager
async def _running(reconciler: TagReconciler) -> AsyncIterator[asyncio.Event]:
    """The reconciler's run loop in a task, stopped (and awaited) on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(reconciler.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _until(condition: Callable[[], Awaitable[bool]], seconds: float) -> float:
    """Poll `condition` until it holds (the seconds it took), failing after `seconds`."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def _operations(requests: list[dict[str, Any]]) -> list[str]:
    return [r["operation"] for r in requests]


async def test_one_slow_shop_does_not_hold_back_another_shops_tags(
    tagging: Tagging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: round() gathered every shop's batch and waited for all, so a shop whose Admin
    API hangs held back the next batch of every other shop until it answered."""
    a = tagging
    await a.customers({1: "1500"}, {})
    await vip_segment(a)
    b = await _second_shop(a)
    await b.customers({2: "1500"}, {})
    await vip_segment(b)
    reconciler, _ = _reconciler(a, tagger_interval_seconds=0.2)
    gate = await _gate(monkeypatch, a.clients, a.shop_id, "tags_add")
    async with _running(reconciler):
        await a.mark(1)
        reconciler.poke()
        await asyncio.wait_for(gate.entered.wait(), 10)
        await b.mark(2)
        reconciler.poke()
        took = await _until(lambda: _has(b, 2, "VIP"), 3.0)
        assert took < 3.0
        assert await a.tags_on_shopify(1) == []  # A is still held
        gate.release.set()
        await _until(lambda: _has(a, 1, "VIP"), 10.0)
    assert await a.db.fetchval("SELECT count(*) FROM tag_work") == 0


async def test_stopping_finishes_the_batch_in_hand(
    tagging: Tagging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop while a shop's tagsAdd is in flight: run() returns only once it was written and
    recorded (nothing cancelled half-way), and no new batch starts after the stop."""
    t = tagging
    await t.customers({1: "1500", 2: "1500"}, {})
    await vip_segment(t)
    reconciler, _ = _reconciler(t, tagger_interval_seconds=0.2, tagger_batch_size=1)
    gate = await _gate(monkeypatch, t.clients, t.shop_id, "tags_add")
    stop = asyncio.Event()
    await t.mark(1)
    task = asyncio.create_task(reconciler.run(stop))
    reconciler.poke()
    await asyncio.wait_for(gate.entered.wait(), 10)
    await t.mark(2)
    stop.set()
    await asyncio.sleep(0)
    assert not task.done()
    gate.release.set()
    await asyncio.wait_for(task, 10)
    written = [await t.tags_on_shopify(c) for c in (1, 2)]
    assert written.count(["VIP"]) == 1  # the one in hand, not the next batch
    left = await t.db.fetch("SELECT customer_id, leased_until FROM tag_work")
    assert len(left) == 1 and left[0]["leased_until"] is None


async def _has(t: Tagging, customer_id: int, tag: str) -> bool:
    return tag in await t.tags_on_shopify(customer_id)


async def test_a_bulk_operation_ending_after_polling_gave_up_is_read_not_resent(
    tagging: Tagging,
) -> None:
    """Finding: when polling gave up on a bulk operation (ShopifyUnavailable) every customer
    of it went to the single path, so each was tagged twice (the operation went on and
    applied its lines) and nothing ever read its result. It must be read by a later poll."""
    t = tagging
    customers = list(range(1, 26))
    await t.customers(dict.fromkeys(customers, "1500"), {})
    await vip_segment(t)
    # The operation is held 1.5 s before it runs; polling gives up after 0.3 s.
    fault = {"kind": "bulk", "delay_ms": 1500}
    assert (await t.http.post(f"/_standin/shops/{t.domain}/faults", json=fault)).is_success
    reconciler, metrics = _reconciler(
        t,
        tagger_interval_seconds=0.1,
        tagger_bulk_poll_timeout_seconds=0.3,
        tagger_bulk_repoll_seconds=0.2,
    )
    await t.mark(*customers, bulk=True)
    async with _running(reconciler):
        await _until(lambda: _count(t, "SELECT count(*) FROM tag_work", lambda n: n == 0), 20)
    assert all([await t.tags_on_shopify(c) == ["VIP"] for c in customers])
    states = await t.db.fetch("SELECT state FROM tag_ledger WHERE shop_id = $1", t.shop_id)
    assert [r["state"] for r in states] == ["added"] * len(customers)
    operations = _operations(await t.requests())
    assert operations.count("bulkOperationRunMutation") == 1
    assert operations.count("tagsAdd") == 0, "a customer was tagged twice"
    assert await t.db.fetchval("SELECT count(*) FROM tag_bulk_operations") == 0
    assert metrics.bulk_operations.labels("late")._value.get() == 1
    assert metrics.bulk_operations.labels("completed")._value.get() == 1


async def _count(t: Tagging, query: str, ok: Callable[[int], bool]) -> bool:
    return ok(await t.db.fetchval(query))


async def test_a_live_change_is_not_held_by_a_dead_reconcilers_bulk_lease(
    tagging: Tagging,
) -> None:
    """Finding: a bulk lease lasted an hour (tagger_bulk_lease_seconds 3600) and a live mark
    keeps the lease, so a reconciler dying with a bulk batch held that batch's customers'
    live changes for an hour. Now a bulk lease is no longer than a live one (and renewed
    while its holder lives): a live change waits one live lease at most."""
    t = tagging
    customers = list(range(1, 26))
    await t.customers(dict.fromkeys(customers, "1500"), {})
    await vip_segment(t)
    await t.mark(*customers, bulk=True)
    # The dead holder's lease, as it took it: the bulk lease from now; it never came back.
    await t.db.execute(
        "UPDATE tag_work SET leased_until = now() + make_interval(secs => $1)",
        t.settings.tagger_bulk_lease_seconds,
    )
    await t.mark(1)  # a live change (an order, say) for one of its customers
    # One live lease later (a clock that far ahead), the live change goes through.
    later, _ = _reconciler(t, timedelta(seconds=t.settings.tagger_lease_seconds + 1))
    assert await later.round()
    assert await t.tags_on_shopify(1) == ["VIP"]
    assert await t.ledger(1) == {"vip": "added"}


async def test_a_living_bulk_holder_keeps_its_lease_past_its_length(tagging: Tagging) -> None:
    """The renewal: a bulk operation that outlasts the (short) lease is not taken over by
    another reconciler while its holder still polls it."""
    t = tagging
    customers = list(range(1, 26))
    await t.customers(dict.fromkeys(customers, "1500"), {})
    await vip_segment(t)
    fault = {"kind": "bulk", "delay_ms": 2500}
    assert (await t.http.post(f"/_standin/shops/{t.domain}/faults", json=fault)).is_success
    await t.mark(*customers, bulk=True)
    holder, _ = _reconciler(t, tagger_bulk_lease_seconds=0.9)
    other, _ = _reconciler(t, tagger_bulk_lease_seconds=0.9)
    held = asyncio.create_task(holder.round())
    started = time.monotonic()
    await _until(lambda: _count(t, _LEASED, lambda n: n == len(customers)), 5)
    while time.monotonic() - started < 2.0 and not held.done():
        assert not await other.round(), "a living holder's lease was taken"
        await asyncio.sleep(0.1)
    assert await asyncio.wait_for(held, 20)
    assert time.monotonic() - started > 2.0  # the operation did outlast the lease
    assert all([await t.tags_on_shopify(c) == ["VIP"] for c in customers])
    assert _operations(await t.requests()).count("bulkOperationRunMutation") == 1
    assert await t.db.fetchval("SELECT count(*) FROM tag_work") == 0


_LEASED = "SELECT count(*) FROM tag_work WHERE leased_until > now()"
