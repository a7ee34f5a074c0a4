"""The segmenter's jsonb codec (storage/rows.py `dumps` / `_jsonb`) keeps every value a payload
can put in a row exactly, as the codec before it did (json.dumps(default=str), json.loads),
and reads rows that codec wrote exactly.

Payload integers are Python ints of any size (the exact parser keeps them, pydantic's `int`
accepts them, PostgreSQL's jsonb stores them as numeric). orjson writes only integers within
64 bits and reads the others as floats.
"""

import json
from typing import Any

import asyncpg
import pytest

from services.common.shops import ShopCredentials
from services.segmenter.domain.state import OrderFact
from services.segmenter.runtime.pipeline import ShopEvent, apply_events
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage import queries, rows
from tests.unit.segmenter.events import CUSTOMER, NOW, at, order, shopify_event

# A line quantity no shop sells, but one the payload models accept and the database stored.
BEYOND_64_BITS = (2**64 + 1, -(2**63) - 1)


def previous_dumps(value: Any) -> str:
    """The codec's writer before orjson (bc0fcf3)."""
    return json.dumps(value, default=str, separators=(",", ":"))


def order_with_quantity(quantity: int) -> dict[str, Any]:
    payload = order(1, "10.00", placed=at(1))
    payload["line_items"][0]["quantity"] = quantity
    return payload


async def apply(db: asyncpg.Connection, shop_id: int, payload: dict[str, Any]) -> None:
    event = shopify_event("orders/create", payload)
    async with db.transaction():
        await apply_events(db, [ShopEvent(shop_id, event)], RuleBook(), NOW)


async def stored_order(db: asyncpg.Connection, shop_id: int) -> OrderFact:
    key = (shop_id, CUSTOMER)
    return (await queries.orders_of_customers(db, [key]))[key][1]


@pytest.mark.parametrize("quantity", BEYOND_64_BITS)
async def test_an_order_with_a_quantity_beyond_64_bits_is_stored_as_before(
    db: asyncpg.Connection, shop: ShopCredentials, quantity: int
) -> None:
    """json.dumps wrote it and jsonb kept it; orjson.dumps raises TypeError ("Integer exceeds
    64-bit range"), so the batch fails and the worker dead-letters the order."""
    await apply(db, shop.shop_id, order_with_quantity(quantity))
    line = (await stored_order(db, shop.shop_id)).lines[0]
    assert (type(line.quantity), line.quantity) == (int, quantity)


@pytest.mark.parametrize("quantity", BEYOND_64_BITS)
async def test_a_row_the_previous_codec_wrote_reads_back_exactly(
    db: asyncpg.Connection,
    shop: ShopCredentials,
    monkeypatch: pytest.MonkeyPatch,
    quantity: int,
) -> None:
    """A row stored before the upgrade: orjson.loads turns its integer into a float (2**64 + 1
    reads as 18446744073709551616.0), which the next write of the order stores changed."""
    with monkeypatch.context() as previous:
        previous.setattr(rows, "dumps", previous_dumps)
        previous.setattr(queries, "dumps", previous_dumps)
        await apply(db, shop.shop_id, order_with_quantity(quantity))
    text = await db.fetchval("SELECT facts::text FROM orders WHERE order_id = 1")
    assert str(quantity) in text  # what jsonb holds is exact
    line = (await stored_order(db, shop.shop_id)).lines[0]
    assert (type(line.quantity), line.quantity) == (int, quantity)
