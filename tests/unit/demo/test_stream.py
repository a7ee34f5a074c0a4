"""The demo stream is deterministic and looks like Shopify's real 2025-07 deliveries."""

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from services.common.jsontext import encode_json
from services.demo.stream import DemoWebhook, demo_stream

NOW = datetime(2025, 9, 1, 16, 30, tzinfo=UTC)
ORDER_TOPICS = {"orders/create", "orders/paid", "orders/updated", "orders/cancelled"}
SHOP_OFFSET = timezone(timedelta(hours=-5))


@pytest.fixture(scope="module")
def stream() -> list[DemoWebhook]:
    return demo_stream(seed=42, now=NOW)


def payloads(stream: list[DemoWebhook], *topics: str) -> list[dict[str, Any]]:
    return [json.loads(w.body) for w in stream if w.topic in topics]


def values_of(node: object, key: str) -> list[Any]:
    """Every value stored under `key` anywhere in a parsed JSON document."""
    found: list[Any] = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                found.append(value)
            found.extend(values_of(value, key))
    elif isinstance(node, list):
        for item in node:
            found.extend(values_of(item, key))
    return found


def test_same_seed_gives_identical_webhooks() -> None:
    assert demo_stream(7, NOW) == demo_stream(7, NOW)


def test_different_seed_gives_different_webhooks() -> None:
    first = [w.body for w in demo_stream(7, NOW)]
    second = [w.body for w in demo_stream(8, NOW)]
    assert first != second


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        demo_stream(1, datetime(2025, 9, 1, 16, 30))


def test_every_body_is_a_json_object_and_every_header_value_is_set(
    stream: list[DemoWebhook],
) -> None:
    for webhook in stream:
        assert isinstance(json.loads(webhook.body), dict)
        assert webhook.api_version == "2025-07"
        assert webhook.triggered_at.utcoffset() == timedelta(0)
        assert webhook.triggered_at <= NOW
        assert webhook.webhook_id and webhook.event_id and webhook.topic


def test_products_come_first_and_carry_product_types(stream: list[DemoWebhook]) -> None:
    products = payloads(stream, "products/create")
    assert [w.topic for w in stream[: len(products)]] == ["products/create"] * len(products)
    assert {"Apparel", "Shoes", "Accessories", "Home"} <= {p["product_type"] for p in products}
    assert len({p["vendor"] for p in products}) >= 3


def test_ids_above_2_53_survive_json_loads_exactly(stream: list[DemoWebhook]) -> None:
    for webhook in stream:
        raw = [int(digits) for digits in re.findall(rb'"id":(\d+)', webhook.body)]
        parsed = values_of(json.loads(webhook.body), "id")
        assert sorted(raw) == sorted(v for v in parsed if isinstance(v, int))
    order_ids = [o["id"] for o in payloads(stream, "orders/create")]
    assert all(isinstance(i, int) and i > 2**53 for i in order_ids)


def test_no_line_item_names_a_product_type(stream: list[DemoWebhook]) -> None:
    documents = payloads(stream, *ORDER_TOPICS, "refunds/create", "checkouts/create")
    lines = [line for doc in documents for items in values_of(doc, "line_items") for line in items]
    lines += [line for doc in documents for line in values_of(doc, "line_item")]
    assert lines
    for line in lines:
        assert "product_type" not in line
        assert {"product_id", "variant_id", "vendor", "title", "quantity", "price"} <= set(line)


def test_order_money_is_decimal_strings_in_shop_money(stream: list[DemoWebhook]) -> None:
    for order in payloads(stream, *ORDER_TOPICS):
        assert re.fullmatch(r"\d+\.\d\d", order["total_price"])
        assert order["total_price_set"]["shop_money"]["amount"] == order["total_price"]
        for line in order["line_items"]:
            assert line["price_set"]["shop_money"]["amount"] == line["price"]


def test_refund_subtotal_is_a_json_number_with_exact_digits(stream: list[DemoWebhook]) -> None:
    [webhook] = [w for w in stream if w.topic == "refunds/create"]
    refund = json.loads(webhook.body, parse_float=Decimal)
    line = refund["refund_line_items"][0]
    amount = line["subtotal_set"]["shop_money"]["amount"]
    assert isinstance(line["subtotal"], Decimal)
    assert line["subtotal"] == Decimal(amount)
    assert f'"subtotal":{amount},'.encode() in webhook.body
    assert isinstance(line["total_tax"], Decimal)


def test_refund_is_also_embedded_in_a_later_order_update(stream: list[DemoWebhook]) -> None:
    topics = [w.topic for w in stream]
    [refund] = payloads(stream, "refunds/create")
    [updated] = payloads(stream, "orders/updated")
    assert topics.index("refunds/create") < topics.index("orders/updated")
    assert updated["id"] == refund["order_id"]
    assert updated["refunds"] == [refund]
    refunded = Decimal(refund["refund_line_items"][0]["subtotal_set"]["shop_money"]["amount"])
    total = Decimal(updated["total_price"])
    assert Decimal(updated["current_total_price"]) == total - refunded


def test_a_customer_spends_over_1000(stream: list[DemoWebhook]) -> None:
    spend: dict[int, Decimal] = defaultdict(Decimal)
    for order in payloads(stream, "orders/paid"):
        if order["customer"] is not None:
            spend[order["customer"]["id"]] += Decimal(order["total_price"])
    assert max(spend.values()) > Decimal("1000")


def test_orders_without_a_customer_exist(stream: list[DemoWebhook]) -> None:
    anonymous = [o for o in payloads(stream, "orders/create") if o["customer"] is None]
    assert len(anonymous) >= 2
    assert all(o["email"] == "" for o in anonymous)


def test_create_and_paid_are_separate_events(stream: list[DemoWebhook]) -> None:
    events: dict[int, dict[str, str]] = defaultdict(dict)
    for webhook in stream:
        if webhook.topic in ("orders/create", "orders/paid"):
            events[json.loads(webhook.body)["id"]][webhook.topic] = webhook.event_id
    paid = [ids for ids in events.values() if "orders/paid" in ids]
    assert paid
    assert all(ids["orders/create"] != ids["orders/paid"] for ids in paid)


def test_cancellation_zeroes_the_current_total(stream: list[DemoWebhook]) -> None:
    [cancelled] = payloads(stream, "orders/cancelled")
    assert cancelled["cancelled_at"]
    assert cancelled["current_total_price"] == "0.00"
    assert Decimal(cancelled["total_price"]) > 0


def test_abandoned_checkouts_are_keyed_by_token(stream: list[DemoWebhook]) -> None:
    checkouts = payloads(stream, "checkouts/create")
    assert all(re.fullmatch(r"[0-9a-f]{32}", c["token"]) for c in checkouts)
    assert any(c["customer"] is None for c in checkouts)
    assert any(c["customer"] is not None for c in checkouts)


def test_customers_are_created_updated_and_consented(stream: list[DemoWebhook]) -> None:
    created = payloads(stream, "customers/create")
    assert len(created) == 20
    assert len({c["default_address"]["country_code"] for c in created}) >= 2
    for customer in created:
        age = NOW - datetime.fromisoformat(customer["created_at"])
        assert timedelta(0) < age <= timedelta(days=731)
    [update] = payloads(stream, "customers/update")
    assert update["id"] in {c["id"] for c in created}
    consents = payloads(stream, "customers_email_marketing_consent/update")
    assert {c["customer_id"] for c in consents} == {c["id"] for c in created}


def test_one_delivery_is_repeated_with_the_same_ids(stream: list[DemoWebhook]) -> None:
    seen: dict[tuple[str, str], DemoWebhook] = {}
    repeats = []
    for webhook in stream:
        key = (webhook.webhook_id, webhook.event_id)
        if key in seen:
            repeats.append((seen[key], webhook))
        seen[key] = webhook
    assert len(repeats) == 1
    original, retry = repeats[0]
    assert original == retry


def test_order_and_customer_timestamps_carry_the_shop_offset(stream: list[DemoWebhook]) -> None:
    for doc in payloads(stream, *ORDER_TOPICS, "customers/create", "customers/update"):
        for stamp in values_of(doc, "created_at") + values_of(doc, "updated_at"):
            assert isinstance(stamp, str)
            assert datetime.fromisoformat(stamp).utcoffset() == SHOP_OFFSET.utcoffset(None)


def test_encoder_writes_decimals_as_numbers_and_refuses_floats() -> None:
    assert encode_json({"a": Decimal("0.10"), "b": "1.50", "c": [None, True]}) == (
        b'{"a":0.10,"b":"1.50","c":[null,true]}'
    )
    with pytest.raises(TypeError):
        encode_json({"a": 0.1})


def test_triggered_at_is_when_the_event_happened(stream: list[DemoWebhook]) -> None:
    *deliveries, _retry = stream
    times = [w.triggered_at for w in deliveries]
    assert times == sorted(times)
    for webhook in deliveries:
        if webhook.topic == "orders/create":
            created = datetime.fromisoformat(json.loads(webhook.body)["created_at"])
            assert webhook.triggered_at == created
