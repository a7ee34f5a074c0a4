"""The segment sizes gauge counts each segment's members in the database, summed over shops by
built-in handle; merchants' own segments read `other`, and an emptied segment reads 0."""

import asyncpg

from services.common.metrics import new_registry
from services.common.shops import ShopCredentials, create_shop
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.segment_sizes import observe_segment_sizes

SEGMENT = """
INSERT INTO segments (shop_id, handle, name, conditions) VALUES ($1, $2, $2, '{"all": []}')
RETURNING id
"""
MEMBERS = """
INSERT INTO memberships (shop_id, segment_id, customer_id, since)
SELECT $1, $2, c, now() FROM unnest($3::bigint[]) AS c
"""


async def test_members_are_counted_per_built_in_handle_over_shops(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    other_shop = await create_shop(db, "other-shop.myshopify.com")
    for shop_id, handle, customers in [
        (shop.shop_id, "vip", [1, 2, 3]),
        (other_shop.shop_id, "vip", [1, 9]),
        (shop.shop_id, "my-own-segment", [4, 5]),
        (other_shop.shop_id, "another-own-one", [6]),
    ]:
        segment_id = await db.fetchval(SEGMENT, shop_id, handle)
        await db.execute(MEMBERS, shop_id, segment_id, customers)
    registry = new_registry()
    metrics = SegmenterMetrics.create(registry)

    def members(segment: str) -> float | None:
        return registry.get_sample_value("segflow_segment_members", {"segment": segment})

    await observe_segment_sizes(pool, metrics)
    assert members("vip") == 5
    assert members("other") == 3
    assert members("big-order") == 0

    await db.execute("DELETE FROM memberships WHERE customer_id <> 9")
    await observe_segment_sizes(pool, metrics)
    assert (members("vip"), members("other")) == (1, 0)
