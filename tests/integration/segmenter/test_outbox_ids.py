"""Outbox change ids are time-ordered (UUIDv7), so the outbox's key index grows at its edge."""

from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from services.common.shops import ShopCredentials
from services.segmenter.storage import queries
from services.segmenter.storage.queries import Change
from services.segmenter.storage.segments import install_templates

NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def test_changes_written_get_time_ordered_version_7_ids(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    await install_templates(db, shop.shop_id, NOW)
    segment_id = await db.fetchval(
        "SELECT id FROM segments WHERE shop_id = $1 AND handle = 'vip'", shop.shop_id
    )
    for customer in range(1, 41):
        change = Change(
            shop.shop_id, customer, segment_id, "vip", 1, "entered", "event", None, None, NOW
        )
        async with db.transaction():
            await queries.write_changes(db, [change])
    rows = await db.fetch("SELECT change_id FROM segment_changes ORDER BY seq")
    ids = [UUID(str(r["change_id"])) for r in rows]
    assert len(ids) == 40 and all(i.version == 7 for i in ids)
    # Written one after another, so in key order too (the index's right edge).
    assert ids == sorted(ids)
