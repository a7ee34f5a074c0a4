"""JSONL exports (tests/fixtures/import): GraphQL bulk output with __parentId, and REST objects."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from services.common.shopify import Customer, Order, Product
from services.segmenter.importer.jsonl import BulkAssembler, read_jsonl
from services.segmenter.importer.records import ImportRecord, Rejection, event_for

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "import"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def read(name: str, window: int = 2000) -> list[ImportRecord | Rejection]:
    with (FIXTURES / name).open(encoding="utf-8") as handle:
        return list(read_jsonl(handle, window=window))


def records(items: list[ImportRecord | Rejection]) -> dict[int, ImportRecord]:
    return {item.payload["id"]: item for item in items if isinstance(item, ImportRecord)}


def test_bulk_orders_get_their_line_items_back_from_the_child_lines() -> None:
    found = records(read("orders_bulk.jsonl"))
    first = found[5960000000000000001]
    assert first.topic == "orders/create" and first.line == 1
    order = event_for(first, NOW).payload
    assert isinstance(order, Order)
    assert order.customer is not None and order.customer.id == 7985351721238
    assert order.total_price == Decimal("199.99")
    assert [(li.id, li.product_id, li.vendor, li.quantity) for li in order.line_items] == [
        (149600000011, 9000000000000000001, "Acme", 2),
        (149600000012, 9000000000000000002, "Stride", 1),
    ]
    assert order.line_items[1].price == Decimal("100.01")
    assert order.processed_at == datetime(2026, 5, 1, 15, 0, tzinfo=UTC)


def test_money_is_shop_money_exactly_and_refunds_come_along() -> None:
    order = event_for(records(read("orders_bulk.jsonl"))[5960000000000000002], NOW).payload
    assert isinstance(order, Order)
    assert order.total_price_set is not None and order.total_price_set.shop_money is not None
    assert order.total_price_set.shop_money.amount == Decimal("89.50")
    assert order.total_price_set.presentment_money is not None
    assert order.total_price_set.presentment_money.currency_code == "CAD"
    [refund] = order.refunds
    assert refund.id == 7000000000000000001 and refund.order_id == order.id
    assert [(t.kind, t.amount) for t in refund.transactions] == [("refund", Decimal("10.00"))]
    # -05:00 in the file, UTC once read.
    assert order.updated_at == datetime(2026, 4, 3, 16, 0, tzinfo=UTC)


def test_cancelled_orders_and_orders_without_customer() -> None:
    found = records(read("orders_bulk.jsonl"))
    cancelled = found[5960000000000000003]
    assert cancelled.topic == "orders/cancelled"
    assert cancelled.payload["cancel_reason"] == "customer"
    pos = event_for(found[5960000000000000004], NOW)
    assert pos.topic == "orders/create" and pos.customer_id is None
    assert isinstance(pos.payload, Order) and pos.payload.customer is None
    assert [li.product_id for li in pos.payload.line_items] == [None]


def test_broken_lines_and_orphan_children_are_rejected_with_their_line() -> None:
    rejected = [item for item in read("orders_bulk.jsonl") if isinstance(item, Rejection)]
    assert [r.line for r in rejected] == [11, 12]
    assert rejected[0].reason == "not JSON: Expecting value at column 80"
    assert "gid://shopify/Order/5960000000000000008" in rejected[1].reason


def test_bulk_customers_and_orders_nested_under_them() -> None:
    items = read("customers_bulk.jsonl")
    assert not [item for item in items if isinstance(item, Rejection)]
    found = records(items)
    bob = event_for(found[820982911946154508], NOW)
    assert bob.topic == "customers/update" and bob.customer_id == 820982911946154508
    customer = bob.payload
    assert isinstance(customer, Customer)
    assert customer.orders_count == 1 and customer.total_spent == Decimal("89.50")
    assert customer.tags == ["wholesale"] and customer.state == "enabled"
    assert customer.default_address is not None
    assert (customer.default_address.city, customer.default_address.country_code) == (
        "Ottawa",
        "CA",
    )
    assert customer.email_marketing_consent is not None
    assert customer.email_marketing_consent.state == "subscribed"
    assert bob.occurred_at == datetime(2026, 4, 1, 10, 0, tzinfo=UTC)

    erin = found[7985351721241].payload
    assert erin["email"] == "erin@example.com"
    assert erin["email_marketing_consent"]["state"] == "not_subscribed"
    nested = event_for(found[5960000000000000005], NOW)
    assert nested.customer_id == 7985351721241
    assert isinstance(nested.payload, Order)
    assert [li.product_id for li in nested.payload.line_items] == [9000000000000000002]


def test_bulk_products_ignore_their_variants() -> None:
    items = read("products_bulk.jsonl")
    assert [type(item) for item in items] == [ImportRecord, ImportRecord]
    product = event_for(records(items)[9000000000000000001], NOW)
    assert product.topic == "products/update" and product.customer_id is None
    assert isinstance(product.payload, Product)
    assert (product.payload.product_type, product.payload.vendor) == ("Apparel", "Acme")
    assert product.event_id == (
        "import:products/update:9000000000000000001:2026-01-10T09:00:00+00:00"
    )


def test_rest_shaped_lines_are_read_as_they_are() -> None:
    items = read("shop_rest.jsonl")
    assert [(type(i).__name__, i.line) for i in items] == [
        ("ImportRecord", 1),
        ("ImportRecord", 2),
        ("ImportRecord", 3),
        ("Rejection", 4),
    ]
    topics = [item.topic for item in items if isinstance(item, ImportRecord)]
    assert topics == ["customers/update", "products/update", "orders/create"]
    order = items[2]
    assert isinstance(order, ImportRecord)
    # Integers above 2^53 were read as int, never through float.
    assert order.payload["id"] == 5960000000000000006
    assert order.payload["customer"]["id"] == 115310627314723954
    event = event_for(order, NOW)
    assert isinstance(event.payload, Order) and event.customer_id == 115310627314723954


def test_ids_above_2_53_from_gids_are_exact() -> None:
    line = json.dumps(
        {
            "id": "gid://shopify/Order/9007199254740993",
            "updatedAt": "2026-01-01T00:00:00Z",
            "customer": {"id": "gid://shopify/Customer/9007199254740995"},
        }
    )
    [record] = list(read_jsonl([line]))
    assert isinstance(record, ImportRecord)
    assert record.payload["id"] == 9007199254740993
    assert record.payload["customer"] == {"id": 9007199254740995}


def bulk_line(gid: str, parent: str | None = None, **fields: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"id": gid, **fields}
    if parent is not None:
        line["__parentId"] = parent
    return line


def test_the_assembler_holds_only_its_window_of_parents() -> None:
    assembler = BulkAssembler(window=2)
    order = "gid://shopify/Order/{}".format
    emitted: list[ImportRecord | Rejection] = []
    for n in (1, 2):
        emitted += assembler.add(bulk_line(order(n)), n)
    assert emitted == []
    # Ungrouped output may list a child after other parents: it still finds its order.
    emitted += assembler.add(bulk_line("gid://shopify/LineItem/11", order(1), quantity=1), 3)
    emitted += assembler.add(bulk_line(order(3)), 4)
    [first] = emitted
    assert isinstance(first, ImportRecord) and first.payload["id"] == 1
    assert [item["id"] for item in first.payload["line_items"]] == [11]
    # Order 1 has left the window: a late child of it can no longer be attached.
    [late] = assembler.add(bulk_line("gid://shopify/LineItem/12", order(1), quantity=1), 5)
    assert isinstance(late, Rejection) and late.line == 5
    assert "not among the 2 top-level objects" in late.reason
    rest = list(assembler.finish())
    assert [item.payload["id"] for item in rest if isinstance(item, ImportRecord)] == [2, 3]


def test_objects_of_other_types_and_bad_ids_are_rejected() -> None:
    lines = [
        json.dumps(bulk_line("gid://shopify/Collection/1")),
        json.dumps(bulk_line("gid://shopify/Order/99999999999999999999")),
        "[1, 2]",
        "",
        '{"total": NaN}',
    ]
    items = list(read_jsonl(lines))
    assert items == [
        Rejection(3, "not a JSON object"),
        Rejection(5, "not JSON: NaN is not valid JSON"),
        Rejection(1, "objects of type Collection are not imported"),
        Rejection(2, "not a Shopify id: 'gid://shopify/Order/99999999999999999999'"),
    ]


def test_a_line_with_an_integer_too_long_to_read_is_rejected_not_fatal() -> None:
    lines = ['{"id": ' + "9" * 5000 + "}", '{"id": "gid://shopify/Customer/1"}']
    items = list(read_jsonl(lines))
    assert isinstance(items[0], Rejection) and items[0].line == 1
    assert "not JSON" in items[0].reason
