"""Issue 13: a backfill of 100,000 customers goes through the bulk lane against the Shopify
stand-in: everyone carries the tag at the end, with bulk operations and no single tagsAdd."""

import asyncio
import random
import time

from prometheus_client import CollectorRegistry

from services.segmenter.runtime.health import ComponentHealth
from services.tagger import storage
from services.tagger.metrics import TaggerMetrics
from services.tagger.reconciler import TagReconciler
from tests.integration.tagger.test_tag_reconciler import NOW, Tagging, vip_segment

pytest_plugins = ["tests.integration.tagger.test_tag_reconciler"]

CUSTOMERS = 100_000
# The bound the issue sets on this 2-core machine (the bulk mutation alone takes ~20 s on the
# stand-in: bench/tagger_shopify.py).
BOUND_SECONDS = 90.0


async def test_a_100k_backfill_goes_through_the_bulk_path(tagging: Tagging) -> None:
    t = tagging
    generate = {"generate": {"first_id": 1, "count": CUSTOMERS}}
    answer = await t.http.post(f"/_standin/shops/{t.domain}/customers", json=generate, timeout=60)
    assert answer.status_code == 200, answer.text
    segment_id = await vip_segment(t)
    # What the segmenter's backfill of the segment leaves: the customers, their memberships.
    await t.db.execute(
        "INSERT INTO customers (shop_id, customer_id) SELECT $1, generate_series(1, $2::bigint)",
        t.shop_id,
        CUSTOMERS,
    )
    await t.db.execute(
        "INSERT INTO memberships (shop_id, segment_id, customer_id, since)"
        " SELECT $1, $2, generate_series(1, $3::bigint), $4",
        t.shop_id,
        segment_id,
        CUSTOMERS,
        NOW,
    )
    # What the tagger's worker writes for the backfill's segment changes: bulk-lane marks.
    await storage.mark_tag_work(
        t.db, {(t.shop_id, customer): True for customer in range(1, CUSTOMERS + 1)}
    )
    reconciler = TagReconciler(
        t.settings.model_copy(update={"tagger_interval_seconds": 0.2}),
        t.reconciler._pool,
        t.clients,
        TaggerMetrics.create(CollectorRegistry()),
        ComponentHealth(),
        rng=random.Random(7),
    )
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(reconciler.run(stop))
    try:
        while await t.db.fetchval("SELECT count(*) FROM tag_work WHERE shop_id = $1", t.shop_id):
            assert not task.done(), task
            assert time.monotonic() - started < BOUND_SECONDS, "the backfill took too long"
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    took = time.monotonic() - started
    assert took < BOUND_SECONDS
    # Every customer carries the tag on the stand-in (its own state, read in process).
    customers = t.standin.runtime.state.shops[t.domain].customers
    untagged = [c.id for c in customers.values() if c.tags != ["VIP"]]
    assert len(customers) == CUSTOMERS and untagged == []
    operations = [r["operation"] for r in await t.requests()]
    assert operations.count("bulkOperationRunMutation") >= 1
    assert operations.count("tagsAdd") == 0
    added = await t.db.fetchval(
        "SELECT count(*) FROM tag_ledger WHERE shop_id = $1 AND state = 'added'", t.shop_id
    )
    assert added == CUSTOMERS
