"""Review 13: sequences that broke the tag reconciler's guarantees (each failed before its fix)."""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from services.common.shops import create_shop
from services.segmenter.runtime.health import ComponentHealth
from services.segmenter.storage.segments import SegmentSpec, update_segment
from services.tagger import storage
from services.tagger.connections import ShopClients, connect_shop
from services.tagger.metrics import TaggerMetrics
from services.tagger.reconciler import TagReconciler
from services.tagger.worker import Echo, TaggerWorker
from tests.integration.tagger.test_tag_reconciler import (
    NOW,
    SECRET,
    VIP_TAG,
    Tagging,
    vip_rule,
    vip_segment,
)

pytest_plugins = ["tests.integration.tagger.test_tag_reconciler"]


class Gate:
    """Holds a Shopify call open until the test lets it go (a slow or throttled shop)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


async def _gate(
    monkeypatch: pytest.MonkeyPatch, clients: ShopClients, shop_id: int, method: str
) -> Gate:
    client = await clients.get(shop_id)
    assert client is not None
    gate = Gate()
    original = getattr(client, method)

    async def gated(*args: object, **kwargs: object) -> object:
        gate.entered.set()
        await gate.release.wait()
        return await original(*args, **kwargs)

    monkeypatch.setattr(client, method, gated)
    return gate


async def _within(seconds: float, condition: asyncio.Event) -> None:
    await asyncio.wait_for(condition.wait(), seconds)


def _reconciler(t: Tagging, clients: ShopClients, skew: timedelta) -> TagReconciler:
    return TagReconciler(
        t.settings,
        t.reconciler._pool,
        clients,
        TaggerMetrics.create(CollectorRegistry()),
        ComponentHealth(),
        clock=lambda: datetime.now(UTC) + skew,
        rng=random.Random(7),
    )


async def _second_shop(t: Tagging) -> Tagging:
    """A second shop, connected to the stand-in like the first, served by the same reconciler."""
    domain = f"t{uuid.uuid4().hex[:12]}.myshopify.com"
    token = f"shpat_{domain.split('.')[0]}"
    created = await t.http.post(
        "/_standin/shops",
        json={"domain": domain, "access_token": token, "webhook_secret": SECRET},
    )
    assert created.status_code == 201, created.text
    shop = await create_shop(t.db, domain, webhook_secret=SECRET)
    await connect_shop(t.db, t.settings, shop.shop_id, domain, token, admin_url=t.standin.url)
    return Tagging(
        t.db, t.standin, domain, shop.shop_id, t.settings, t.reconciler, t.clients, t.http
    )


async def test_review13_a_refused_bulk_line_is_not_recorded_as_added(tagging: Tagging) -> None:
    """Finding: in the bulk path a line Shopify refused (userErrors) is still recorded as
    applied (`_record(..., bool(step.add), ...)`), so the ledger says `added` for a tag the
    customer does not have, and no later pass ever writes it."""
    t = tagging
    customers = dict.fromkeys(range(1, 26), "1500")
    full = [f"m{i:03d}" for i in range(250)]  # Shopify refuses a 251st tag
    await t.customers(customers, {7: full})
    await vip_segment(t)
    await t.mark(*customers, bulk=True)
    await t.settle()
    operations = [r["operation"] for r in await t.requests()]
    assert operations.count("bulkOperationRunMutation") == 1, operations
    assert "VIP" not in await t.tags_on_shopify(7)
    # The ledger must not claim a tag Shopify refused.
    assert (await t.ledger(7)).get("vip") != "added"


async def test_review13_an_expired_lease_lets_a_stale_write_outlive_the_membership(
    tagging: Tagging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: no fencing on the lease. Replica A leases the customer and reads their
    memberships, then its Shopify call outlasts the lease; replica B takes the (re-marked)
    customer, who has left the segment, and finishes the work row. A then adds the tag and
    records it `added`; nothing is left queued, so the tag stays on a non-member for good."""
    t = tagging
    await t.customers({1: "1500"}, {})
    segment_id = await vip_segment(t)
    gate = await _gate(monkeypatch, t.clients, t.shop_id, "customers_tags")
    await t.mark(1)
    replica_a = asyncio.create_task(t.reconciler.round())
    await _within(10, gate.entered)
    # The customer leaves while A waits on Shopify; the change marks them again.
    spec = SegmentSpec("vip", "VIP", "", vip_rule(5000), VIP_TAG)
    async with t.db.transaction():
        await update_segment(t.db, t.shop_id, segment_id, spec, NOW)
    await t.mark(1)
    # Replica B, for which A's lease has run out.
    other = ShopClients(t.settings, t.reconciler._pool, rng=random.Random(8))
    try:
        skew = timedelta(seconds=t.settings.tagger_lease_seconds + 1)
        await _reconciler(t, other, skew).round()
    finally:
        await other.close()
    gate.release.set()
    await asyncio.wait_for(replica_a, 20)
    await t.settle()
    assert "VIP" not in await t.tags_on_shopify(1), (
        await t.ledger(1),
        await t.db.fetch("SELECT * FROM tag_work"),
    )


async def test_review13_a_tag_the_merchant_put_back_is_not_claimed_on_reentry(
    tagging: Tagging,
) -> None:
    """Finding: after a removal the entry stays `removed` (the removal's echo is older than
    the entry's changed_at, stamped when Shopify answered, so on_echo ignores it), and a
    `removed` entry that is wanted again is re-added without reading Shopify. A tag the
    merchant put back by hand meanwhile (its webhook not in yet) is claimed `added`, and the
    next exit removes the merchant's tag."""
    t = tagging
    await t.customers({1: "1500"}, {})
    segment_id = await vip_segment(t)

    async def threshold(value: int) -> None:
        spec = SegmentSpec("vip", "VIP", "", vip_rule(value), VIP_TAG)
        async with t.db.transaction():
            await update_segment(t.db, t.shop_id, segment_id, spec, NOW)
        await t.mark(1)
        await t.settle()

    await t.mark(1)
    await t.settle()
    assert await t.tags_on_shopify(1) == ["VIP"]
    await threshold(5000)  # leaves: our tag goes
    assert await t.tags_on_shopify(1) == []
    # The merchant tags the customer by hand; its webhook has not reached segflow yet.
    seeded = await t.http.post(
        f"/_standin/shops/{t.domain}/customers", json={"customers": [{"id": 1, "tags": ["vip"]}]}
    )
    assert seeded.status_code < 300, seeded.text
    await threshold(1000)  # enters again: the tag is the merchant's, not ours
    assert await t.ledger(1) == {"vip": "merchant"}
    await threshold(5000)  # leaves again: the merchant's tag stays
    assert await t.tags_on_shopify(1) == ["vip"]


async def test_review13_the_merchant_removing_their_wanted_tag_settles_whatever_comes_after(
    tagging: Tagging,
) -> None:
    """Finding: a member whose tag was the merchant's (`merchant` entry) has it removed by
    hand; on_echo just drops the entry (no override, no recheck). The customer stays
    untagged until any unrelated change marks them, and then the tag is written back over
    the merchant's removal: the tags depend on unrelated traffic, not on the memberships and
    what happened to the tag (either record an override or recheck at the echo)."""
    t = tagging
    await t.customers({1: "1500"}, {1: ["vip"]})
    await vip_segment(t)
    await t.mark(1)
    await t.settle()
    assert await t.ledger(1) == {"vip": "merchant"}
    # The merchant takes their tag off by hand; its webhook reaches the tagger.
    seeded = await t.http.post(
        f"/_standin/shops/{t.domain}/customers", json={"customers": [{"id": 1, "tags": []}]}
    )
    assert seeded.status_code < 300, seeded.text
    worker = TaggerWorker(
        t.settings,
        t.reconciler._pool,
        None,  # echoes need no consumer
        TaggerMetrics.create(CollectorRegistry()),
        ComponentHealth(),
        poke=lambda: None,
    )
    work: dict[tuple[int, int], bool] = {}
    echo = Echo(t.domain, 1, datetime.now(UTC), removed=("vip",))
    async with t.db.transaction():
        await worker._apply_echoes(t.db, [echo], {t.domain: t.shop_id}, work)
        await storage.mark_tag_work(t.db, work)
    await t.settle()
    after_echo = await t.tags_on_shopify(1), await t.ledger(1)
    # Some unrelated change of the customer marks them again (a new order, say): whichever
    # way the removal is read (an override, or now ours to add), it must not change the tags.
    await t.mark(1)
    await t.settle()
    assert (await t.tags_on_shopify(1), await t.ledger(1)) == after_echo


async def test_review13_one_shops_unreadable_token_does_not_stop_every_shops_tags(
    tagging: Tagging,
) -> None:
    """Finding: a shop whose sealed token does not open (its key no longer configured, a
    damaged row) makes ShopClients.get raise SealingError inside round(); that is not an
    infrastructure fault, so TagReconciler.run re-raises and the tagger stops tagging for
    every shop. The shop's work should be put back (visible, retried), the others go on."""
    t = tagging
    await t.customers({1: "1500"}, {})
    await vip_segment(t)
    broken = await _second_shop(t)
    await broken.customers({2: "1500"}, {})
    await vip_segment(broken)
    await t.db.execute(
        "UPDATE shop_connections SET key_id = 'gone' WHERE shop_id = $1", broken.shop_id
    )
    await t.mark(1)
    await broken.mark(2)
    await t.reconciler.round()  # must not raise: one shop's row is not the tagger's fault
    assert await t.tags_on_shopify(1) == ["VIP"]
    row = await t.db.fetchrow("SELECT * FROM tag_work WHERE shop_id = $1", broken.shop_id)
    assert row is not None and row["attempts"] == 1 and row["last_error"]
