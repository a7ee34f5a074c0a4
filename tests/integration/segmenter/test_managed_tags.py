"""Tags the tagger put on a customer come back in Shopify's webhooks; they are segflow's, so
the merchant's tags fact (what rules read) leaves them out and their echo changes nothing."""

from datetime import timedelta
from typing import Any

import asyncpg

from services.common.shops import ShopCredentials
from services.segmenter.domain.reducer import Event
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage.rows import facts_from_row
from services.segmenter.storage.segments import SegmentSpec, create_segment
from tests.unit.segmenter.events import CUSTOMER, NOW, shopify_event

TAGGED_VIP = {"all": [{"name": "tags", "operator": "contains", "value": "vip"}]}


async def run(db: asyncpg.Connection, shop_id: int, *events: Event) -> Any:
    async with db.transaction():
        return await apply_events(db, [ShopEvent(shop_id, e) for e in events], RuleBook(), NOW)


def tags_event(topic: str, tags: list[str], seconds: int) -> Event:
    payload = {
        "customerId": f"gid://shopify/Customer/{CUSTOMER}",
        "tags": tags,
        "occurredAt": (NOW + timedelta(seconds=seconds)).isoformat(),
    }
    event = shopify_event(topic, payload, event_id=f"{topic}-{seconds}")
    return Event(**{**event.__dict__, "customer_id": CUSTOMER})


async def tags_fact(db: asyncpg.Connection, shop_id: int) -> tuple[str, ...]:
    row = await db.fetchrow(
        "SELECT * FROM customers WHERE shop_id = $1 AND customer_id = $2", shop_id, CUSTOMER
    )
    return facts_from_row(row).tags


async def test_an_echo_of_our_tag_is_not_the_merchants_and_changes_nothing(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    shop_id = shop.shop_id
    spec = SegmentSpec("tagged-vip", "Tagged VIP by the merchant", "", TAGGED_VIP, [])
    async with db.transaction():
        await create_segment(db, shop_id, spec, NOW)
    await run(db, shop_id, shopify_event("customers/create", {"id": CUSTOMER, "email": "a@b.c"}))
    await db.execute(
        "INSERT INTO tag_ledger (shop_id, customer_id, tag_key, tag, state, changed_at)"
        " VALUES ($1, $2, 'vip', 'VIP', 'adding', $3)",
        shop_id,
        CUSTOMER,
        NOW,
    )
    echo = await run(db, shop_id, tags_event("customer.tags_added", ["VIP"], 1))
    assert echo.changes == []
    assert await tags_fact(db, shop_id) == ()
    # The merchant's own tag is seen; a tag the merchant already had stays the merchant's.
    await db.execute("UPDATE tag_ledger SET state = 'merchant'")
    theirs = await run(db, shop_id, tags_event("customer.tags_added", ["wholesale"], 2))
    assert await tags_fact(db, shop_id) == ("VIP", "wholesale")
    assert [(c.segment_handle, c.change) for c in theirs.changes] == [("tagged-vip", "entered")]
    # Every state the tagger counts as its own is left out (the first takes VIP away).
    expected = {"added": [("tagged-vip", "exited")], "removing": [], "removed": []}
    for seconds, (state, changes) in enumerate(expected.items(), start=3):
        await db.execute("UPDATE tag_ledger SET state = $1", state)
        outcome = await run(db, shop_id, tags_event("customer.tags_added", ["other"], seconds))
        assert await tags_fact(db, shop_id) == ("other", "wholesale"), state
        assert [(c.segment_handle, c.change) for c in outcome.changes] == changes, state
