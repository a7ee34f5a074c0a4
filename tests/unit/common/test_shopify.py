"""Shopify payload models against Shopify's published sample payloads (tests/fixtures/shopify)."""

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from pydantic import BaseModel, ValidationError

from services.common.shopify import (
    Checkout,
    Customer,
    CustomerDataRequest,
    CustomerRedact,
    CustomerTagsChanged,
    DeletedCustomer,
    EmailConsentUpdate,
    MoneyBag,
    Order,
    Product,
    PurchasingSummary,
    Refund,
    ShopifyModel,
    ShopRedact,
    SmsConsentUpdate,
    customer_id_of,
    loads_payload,
    parse_payload,
    parse_shopify_id,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "shopify"
ORDER_TOPICS = [
    "orders/create",
    "orders/paid",
    "orders/updated",
    "orders/fulfilled",
    "orders/partially_fulfilled",
    "orders/cancelled",
]
EXPECTED_MODEL: dict[str, type[ShopifyModel]] = {
    "orders/create": Order,
    "refunds/create": Refund,
    "customers/create": Customer,
    "customers/update": Customer,
    "customers/delete": DeletedCustomer,
    "checkouts/create": Checkout,
    "products/create": Product,
    "customer.tags_added": CustomerTagsChanged,
    "customer.tags_removed": CustomerTagsChanged,
    "customers_email_marketing_consent/update": EmailConsentUpdate,
    "customers_marketing_consent/update": SmsConsentUpdate,
    "customers/purchasing_summary": PurchasingSummary,
    "customers/redact": CustomerRedact,
    "customers/data_request": CustomerDataRequest,
    "shop/redact": ShopRedact,
}
M = TypeVar("M", bound=ShopifyModel)


def _topic_of(path: Path) -> str:
    return path.stem.replace("__", "/")


def _fixture_paths() -> list[Path]:
    return sorted(FIXTURES.glob("*/*.json"))


def _raw(version: str, topic: str) -> bytes:
    return (FIXTURES / version / f"{topic.replace('/', '__')}.json").read_bytes()


def _load(version: str, topic: str) -> Any:
    return loads_payload(_raw(version, topic))


def _parse_as(cls: type[M], topic: str, payload: Any) -> M:
    model = parse_payload(topic, payload)
    assert isinstance(model, cls)
    return model


def _leaves(value: object) -> Iterator[object]:
    """Every scalar inside a decoded payload or a model tree."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _leaves(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def test_fixtures_cover_every_topic_and_the_old_and_new_shapes() -> None:
    present = {(path.parent.name, _topic_of(path)) for path in _fixture_paths()}
    assert {topic for _, topic in present} == set(EXPECTED_MODEL)
    for topic in ["orders/create", "customers/create", "customers/update", "checkouts/create"]:
        assert ("2023-07", topic) in present
        assert ("2026-04", topic) in present


@pytest.mark.parametrize("path", _fixture_paths(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_fixture_parses_for_its_topic(path: Path) -> None:
    topic = _topic_of(path)
    model = parse_payload(topic, loads_payload(path.read_bytes()))
    assert type(model) is EXPECTED_MODEL[topic]


@pytest.mark.parametrize("path", _fixture_paths(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_no_float_and_only_utc_datetimes_anywhere(path: Path) -> None:
    payload = loads_payload(path.read_bytes())
    assert not any(isinstance(leaf, float) for leaf in _leaves(payload))
    model = parse_payload(_topic_of(path), payload)
    for leaf in _leaves(model):
        assert not isinstance(leaf, float)
        if isinstance(leaf, datetime):
            assert leaf.tzinfo is UTC


def test_order_body_is_the_same_model_for_every_order_topic() -> None:
    payload = _load("2026-04", "orders/create")
    orders = [_parse_as(Order, topic, payload) for topic in ORDER_TOPICS]
    assert all(order == orders[0] for order in orders)


def test_ids_above_2_53_survive_exactly() -> None:
    raw = _raw("2023-07", "orders/create")
    order = _parse_as(Order, "orders/create", loads_payload(raw))
    assert order.id == 820982911946154500 > 2**53
    assert order.customer is not None
    assert order.customer.id == 115310627314723950
    assert [line.id for line in order.line_items] == [866550311766439000, 141249953214522980]

    # The published copies went through JavaScript and lost their last digits (the GID kept
    # them); a body carrying the real id must come through with every digit.
    real = raw.replace(b'"id": 820982911946154500', b'"id": 820982911946154508', 1)
    order = _parse_as(Order, "orders/create", loads_payload(real))
    assert order.id == 820982911946154508
    assert order.id == parse_shopify_id(order.admin_graphql_api_id)
    assert int(float(order.id)) != order.id


def test_refund_ids_keep_their_digits() -> None:
    refund = _parse_as(Refund, "refunds/create", _load("2026-04", "refunds/create"))
    assert refund.id == 890088186047892400
    assert refund.order_id == 820982911946154500
    assert refund.refund_line_items[0].line_item_id == 487817672276298560


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gid://shopify/Customer/1", 1),
        ("gid://shopify/Customer/820982911946154508", 820982911946154508),
        ("gid://shopify/Order/1", 1),
        ("gid://shopify/MailingAddress/9?model_name=CustomerAddress", 9),
        ("820982911946154508", 820982911946154508),
        (" 42 ", 42),
        (820982911946154508, 820982911946154508),
        (Decimal("5"), 5),
        (None, None),
        ("", None),
        ("  ", None),
    ],
)
def test_parse_shopify_id(value: object, expected: int | None) -> None:
    assert parse_shopify_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        820982911946154508.0,
        True,
        Decimal("1.5"),
        "abc",
        "12a",
        "gid://shopify/Customer/",
        "gid://shopify/Customer/abc",
        -1,
        2**63,
        [1],
    ],
)
def test_parse_shopify_id_rejects_what_is_not_an_id(value: object) -> None:
    with pytest.raises(ValueError):
        parse_shopify_id(value)


def test_order_money_is_decimal_with_the_published_digits() -> None:
    order = _parse_as(Order, "orders/create", _load("2026-04", "orders/create"))
    assert order.total_price == Decimal("404.95")
    assert order.current_total_price == Decimal("414.95")
    assert order.subtotal_price == Decimal("404.95")
    assert order.total_price_set is not None
    assert order.total_price_set.shop_money is not None
    assert order.total_price_set.shop_money.amount == Decimal("404.95")
    assert order.total_price_set.shop_money.currency_code == "USD"
    assert order.line_items[0].price == Decimal("89.99")
    assert isinstance(order.line_items[0].price, Decimal)


def test_refund_line_numbers_become_exact_decimals() -> None:
    refund = _parse_as(Refund, "refunds/create", _load("2026-04", "refunds/create"))
    first = refund.refund_line_items[0]
    assert isinstance(first.subtotal, Decimal)
    assert first.subtotal.as_tuple() == Decimal("89.99").as_tuple()
    assert first.total_tax == Decimal(0)
    assert [line.subtotal for line in refund.refund_line_items] == [
        Decimal("89.99"),
        Decimal("19.99"),
        Decimal("24.99"),
        Decimal("159.99"),
        Decimal("119.99"),
    ]
    assert refund.transactions[0].amount == Decimal("75.00")
    assert refund.transactions[0].currency is None

    old = _parse_as(Refund, "refunds/create", _load("2023-07", "refunds/create"))
    assert old.refund_line_items[0].subtotal == Decimal(199)


def test_plainly_decoded_floats_are_refused_not_rounded() -> None:
    payload = json.loads(_raw("2026-04", "refunds/create"))
    assert isinstance(payload["refund_line_items"][0]["subtotal"], float)
    with pytest.raises(ValidationError):
        parse_payload("refunds/create", payload)


def test_loads_payload_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError):
        loads_payload(b'{"total_price": NaN}')


def test_currency_under_currency_and_currency_code_keys() -> None:
    raw = _load("2026-04", "refunds/create")
    unsettled = MoneyBag.model_validate(raw["transactions"][0]["total_unsettled_set"])
    assert unsettled.shop_money is not None
    assert unsettled.shop_money.currency_code == "XXX"
    assert unsettled.shop_money.amount == Decimal("0.0")

    summary = _parse_as(
        PurchasingSummary,
        "customers/purchasing_summary",
        _load("2026-04", "customers/purchasing_summary"),
    )
    assert summary.amount_spent is not None
    assert summary.amount_spent.amount == Decimal("100.00")
    assert summary.amount_spent.currency_code == "USD"


def test_datetimes_are_aware_and_normalised_to_utc() -> None:
    order = _parse_as(Order, "orders/create", _load("2026-04", "orders/create"))
    assert order.created_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)
    assert order.created_at is not None
    assert order.created_at.utcoffset() == timedelta(0)
    assert order.processed_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)

    tags = _parse_as(
        CustomerTagsChanged, "customer.tags_added", _load("2025-10", "customer.tags_added")
    )
    assert tags.occurred_at == datetime(2005, 5, 5, 4, 0, tzinfo=UTC)


def test_a_naive_timestamp_is_refused() -> None:
    payload = _load("2026-04", "customers/create")
    payload["created_at"] = "2021-12-31T19:00:00"
    with pytest.raises(ValidationError):
        parse_payload("customers/create", payload)


def test_null_customer_and_empty_email_on_an_order() -> None:
    payload = _load("2023-07", "orders/create")
    payload["customer"] = None
    payload["email"] = ""
    payload["contact_email"] = ""
    order = _parse_as(Order, "orders/create", payload)
    assert order.customer is None
    assert order.email is None
    assert order.contact_email is None
    assert customer_id_of("orders/create", payload) is None


def test_null_customer_on_a_checkout() -> None:
    payload = _load("2026-04", "checkouts/create")
    payload["customer"] = None
    payload["email"] = ""
    checkout = _parse_as(Checkout, "checkouts/create", payload)
    assert checkout.customer is None
    assert checkout.email is None
    assert customer_id_of("checkouts/create", payload) is None


def test_payloads_without_protected_customer_data_parse() -> None:
    protected = ["email", "first_name", "last_name", "phone", "default_address", "addresses"]
    customer = _load("2026-04", "customers/create")
    for key in protected:
        del customer[key]
    parsed = _parse_as(Customer, "customers/create", customer)
    assert parsed.id == 706405506930370000
    assert (parsed.email, parsed.first_name, parsed.phone, parsed.default_address) == (
        None,
        None,
        None,
        None,
    )

    order = _load("2026-04", "orders/create")
    for key in ["email", "contact_email", "phone", "billing_address", "shipping_address"]:
        del order[key]
    for key in ["email", "first_name", "last_name", "phone", "default_address"]:
        del order["customer"][key]
    parsed_order = _parse_as(Order, "orders/create", order)
    assert parsed_order.email is None
    assert parsed_order.customer is not None
    assert parsed_order.customer.id == 115310627314723950
    assert parsed_order.customer.email is None
    assert customer_id_of("orders/create", order) == 115310627314723950


def test_nulls_the_samples_carry_are_unknown_not_errors() -> None:
    order = _parse_as(Order, "orders/create", _load("2026-04", "orders/create"))
    extra_line = order.line_items[1]
    assert (extra_line.product_id, extra_line.variant_id, extra_line.vendor) == (None, None, None)
    assert order.customer is not None
    assert order.customer.created_at is None
    assert order.checkout_id is None


def test_customer_shapes_before_and_after_2024_10() -> None:
    old = _parse_as(Customer, "customers/update", _load("2023-07", "customers/update"))
    assert old.tags == []
    assert old.orders_count == 0
    assert old.total_spent == Decimal("0.00")
    assert old.accepts_marketing is False

    new = _parse_as(Customer, "customers/update", _load("2026-04", "customers/update"))
    assert new.tags is None
    assert new.orders_count is None
    assert new.email_marketing_consent is None
    assert new.default_address is not None
    assert new.default_address.country_code == "CA"
    assert new.default_address.city == "Ottawa"


def test_tags_from_a_string_or_a_list() -> None:
    product = _parse_as(Product, "products/create", _load("2025-07", "products/create"))
    assert product.tags == ["example", "mens", "t-shirt"]
    assert product.product_type == "Shirts"

    order = _parse_as(Order, "orders/create", _load("2023-07", "orders/create"))
    assert order.tags == ["tag1", "tag2"]

    removed = _parse_as(
        CustomerTagsChanged, "customer.tags_removed", _load("2025-07", "customer.tags_removed")
    )
    assert removed.customer_id == 1
    assert removed.tags == ["tag1", "tag2"]


def test_checkout_keys_before_and_after_2026_04() -> None:
    old = _parse_as(Checkout, "checkouts/create", _load("2023-07", "checkouts/create"))
    assert old.id == 981820079255243500
    assert old.token == "123123123"
    assert old.total_price == Decimal("421.88")
    assert old.line_items[0].vendor == "Apple"

    new = _parse_as(Checkout, "checkouts/create", _load("2026-04", "checkouts/create"))
    assert new.id is None
    assert new.token == "123123123"
    assert new.abandoned_checkout_url is not None


def test_refunds_embedded_in_an_order_use_the_refund_model() -> None:
    refund_payload = _load("2026-04", "refunds/create")
    order_payload = _load("2026-04", "orders/create")
    order_payload["refunds"] = [copy.deepcopy(refund_payload)]
    order = _parse_as(Order, "orders/create", order_payload)
    standalone = _parse_as(Refund, "refunds/create", refund_payload)
    assert order.refunds == [standalone]


def test_privacy_payloads() -> None:
    redact = _parse_as(CustomerRedact, "customers/redact", _load("2025-10", "customers/redact"))
    assert redact.shop_id == 954889
    assert redact.customer is not None
    assert redact.customer.id == 191167
    assert redact.orders_to_redact == [299938, 280263, 220458]

    request = _parse_as(
        CustomerDataRequest, "customers/data_request", _load("2026-04", "customers/data_request")
    )
    assert request.orders_requested == [299938, 280263, 220458]
    assert request.data_request is not None
    assert request.data_request.id == 9999

    shop = _parse_as(ShopRedact, "shop/redact", _load("2026-04", "shop/redact"))
    assert (shop.shop_id, shop.shop_domain) == (954889, "{shop}.myshopify.com")


def test_consent_topics_name_the_customer_differently() -> None:
    email = _parse_as(
        EmailConsentUpdate,
        "customers_email_marketing_consent/update",
        _load("2026-04", "customers_email_marketing_consent/update"),
    )
    assert email.customer_id == 706405506930370000
    assert email.email_marketing_consent is not None
    assert email.email_marketing_consent.state == "not_subscribed"

    sms = _parse_as(
        SmsConsentUpdate,
        "customers_marketing_consent/update",
        _load("2023-07", "customers_marketing_consent/update"),
    )
    assert sms.customer_id == 706405506930370000
    assert sms.sms_marketing_consent is not None
    assert sms.sms_marketing_consent.state is None
    assert sms.sms_marketing_consent.consent_collected_from == "other"


@pytest.mark.parametrize(
    ("version", "topic", "expected"),
    [
        ("2023-07", "orders/create", 115310627314723950),
        ("2026-04", "orders/create", 115310627314723950),
        ("2023-07", "checkouts/create", 603851970716743400),
        ("2026-04", "checkouts/create", 603851970716743400),
        ("2023-07", "customers/create", 706405506930370000),
        ("2026-04", "customers/update", 706405506930370000),
        ("2025-10", "customers/delete", 706405506930370000),
        ("2025-10", "customer.tags_added", 1),
        ("2025-07", "customer.tags_removed", 1),
        ("2026-04", "customers_email_marketing_consent/update", 706405506930370000),
        ("2023-07", "customers_marketing_consent/update", 706405506930370000),
        ("2026-04", "customers/purchasing_summary", 1),
        ("2025-10", "customers/redact", 191167),
        ("2026-04", "customers/data_request", 191167),
        ("2026-04", "refunds/create", None),
        ("2025-07", "products/create", None),
        ("2026-04", "shop/redact", None),
    ],
)
def test_customer_id_of_every_topic(version: str, topic: str, expected: int | None) -> None:
    assert customer_id_of(topic, _load(version, topic)) == expected


def test_customer_id_of_every_order_topic_and_the_other_customer_topics() -> None:
    order = _load("2023-07", "orders/create")
    assert {customer_id_of(topic, order) for topic in ORDER_TOPICS} == {115310627314723950}
    customer = _load("2026-04", "customers/update")
    for topic in ["customers/enable", "customers/disable", "checkouts/update", "products/update"]:
        expected = 706405506930370000 if topic.startswith("customers/") else None
        assert customer_id_of(topic, customer) == expected


def test_customer_id_of_reads_gids_exactly() -> None:
    payload = {"customerId": "gid://shopify/Customer/820982911946154508", "tags": ["vip"]}
    assert customer_id_of("customer.tags_added", payload) == 820982911946154508
    assert customer_id_of("customers/purchasing_summary", payload) == 820982911946154508


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("orders/create", {"customer": "not an object"}),
        ("orders/create", {"customer": {"id": "not an id"}}),
        ("orders/create", {"customer": {}}),
        ("orders/create", {}),
        ("checkouts/update", {"customer": [1, 2]}),
        ("customers/update", {"id": 1.5}),
        ("customers/update", {"id": None}),
        ("customer.tags_added", {"customerId": "gid://shopify/Customer/"}),
        ("customers/redact", {"shop_id": 1, "customer": None}),
        ("orders/create", [1, 2]),
        ("orders/create", None),
        ("no/such_topic", {"id": 1, "customer": {"id": 2}}),
    ],
)
def test_customer_id_of_never_raises_on_odd_input(topic: str, payload: object) -> None:
    assert customer_id_of(topic, cast(Any, payload)) is None


def test_parse_payload_returns_none_for_an_unknown_topic() -> None:
    assert parse_payload("app/uninstalled", {"id": 1}) is None
    assert parse_payload("orders/edited", _load("2026-04", "orders/create")) is None


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("orders/create", [1, 2]),
        ("orders/create", "an order"),
        ("orders/create", {"id": 1, "line_items": "several"}),
        ("orders/create", {"id": 1, "total_price": "a lot"}),
        ("orders/create", {"id": 1, "customer": "someone"}),
        ("customers/update", {"id": "gid://shopify/Customer/abc"}),
        ("shop/redact", {"shop_domain": "example.myshopify.com"}),
    ],
)
def test_parse_payload_raises_only_on_impossible_shapes(topic: str, payload: object) -> None:
    with pytest.raises(ValidationError):
        parse_payload(topic, cast(Any, payload))
