"""Typed, lenient models of the Shopify webhook payloads segflow reads.

Decode bodies with `loads_payload` (fractions become Decimal, never float), then `parse_payload`.
A missing or null field means "unknown" and reads as None; only an object's own id is required.
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from services.common.envelope import loads_json

T = TypeVar("T")

# Ids must fit Postgres BIGINT; Shopify's do (they are 64-bit, often above 2^53).
_MAX_ID = 2**63 - 1
_GID = re.compile(r"gid://shopify/\w+/(\d+)(?:\?\S*)?")


def loads_payload(raw: bytes) -> Any:
    """Decode a webhook body: numbers with a fraction become Decimal, integers int, never float."""
    return loads_json(raw)


def tag_key(tag: str) -> str:
    """A customer tag as Shopify compares it: without surrounding space or case."""
    return tag.strip().casefold()


def parse_shopify_id(value: object) -> int | None:
    """Shopify id from an int, a numeric string or a GID ("gid://shopify/Customer/123").

    None or an empty string gives None; anything else (a float included) raises ValueError.
    """
    if value is None:
        return None
    result: int | None = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        result = value
    elif isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            result = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        match = _GID.fullmatch(text)
        if match:
            result = int(match.group(1))
        elif text.isascii() and text.isdigit():
            result = int(text)
    if result is None or not 0 <= result <= _MAX_ID:
        raise ValueError(f"not a Shopify id: {value!r}")
    return result


def _to_decimal(value: object) -> Decimal | None:
    """Money from a decimal string, an int or a Decimal; a float is refused, not rounded."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str):
        if not value.strip():
            return None
        try:
            amount = Decimal(value.strip())
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal amount: {value!r}") from exc
    else:
        raise ValueError(f"money must be a decimal string, int or Decimal, got {value!r}")
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return amount


def _empty_to_none(value: object) -> object:
    # Shopify sends "" for an unknown email and, in some payloads, [] or {} for an absent object.
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, (list, dict)) and not value:
        return None
    return value


def _null_to_empty_list(value: object) -> object:
    return [] if value is None else value


def _split_tags(value: object) -> object:
    # Customer and product payloads carry tags as one "a, b" string; the tag topics send a list.
    if isinstance(value, str):
        return [tag.strip() for tag in value.split(",") if tag.strip()]
    return value


def _to_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


ShopifyId = Annotated[int, BeforeValidator(parse_shopify_id)]
OptionalId = Annotated[int | None, BeforeValidator(parse_shopify_id)]
Amount = Annotated[Decimal | None, BeforeValidator(_to_decimal)]
Text = Annotated[str | None, BeforeValidator(_empty_to_none)]
Timestamp = Annotated[
    AwareDatetime | None, BeforeValidator(_empty_to_none), AfterValidator(_to_utc)
]
Tags = Annotated[list[str] | None, BeforeValidator(_split_tags)]
Nested = Annotated[T | None, BeforeValidator(_empty_to_none)]
Items = Annotated[list[T], BeforeValidator(_null_to_empty_list)]


class ShopifyModel(BaseModel):
    """Base of the payload models: unknown keys are ignored, instances are immutable."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class Money(ShopifyModel):
    """An amount with its currency; Shopify names the currency key three different ways."""

    amount: Amount = None
    currency_code: Text = Field(
        default=None, validation_alias=AliasChoices("currency_code", "currency", "currencyCode")
    )


class MoneyBag(ShopifyModel):
    """A `*_set` object: the amount in shop currency and in the buyer's currency."""

    shop_money: Nested[Money] = None
    presentment_money: Nested[Money] = None


class Address(ShopifyModel):
    """The location parts of an address (street and name are not kept)."""

    city: Text = None
    province: Text = None
    province_code: Text = None
    country: Text = None
    country_code: Text = None
    country_name: Text = None
    zip: Text = None


class MarketingConsent(ShopifyModel):
    """Email or SMS marketing consent."""

    state: Text = None
    opt_in_level: Text = None
    consent_updated_at: Timestamp = None
    consent_collected_from: Text = None


class Customer(ShopifyModel):
    """customers/create|update|enable|disable, and the customer nested in orders and checkouts."""

    id: ShopifyId
    admin_graphql_api_id: Text = None
    email: Text = None
    phone: Text = None
    first_name: Text = None
    last_name: Text = None
    state: Text = None
    verified_email: bool | None = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    currency: Text = None
    # Until 2024-10 only; absent later (see the tag, consent and purchasing summary topics).
    tags: Tags = None
    orders_count: int | None = None
    total_spent: Amount = None
    last_order_id: OptionalId = None
    # Not a webhook field: imports carry the date of the last order the export names
    # (GraphQL `lastOrder.processedAt`), so customers known only from Shopify's totals age.
    last_order_at: Timestamp = None
    accepts_marketing: bool | None = None
    accepts_marketing_updated_at: Timestamp = None
    marketing_opt_in_level: Text = None
    email_marketing_consent: Nested[MarketingConsent] = None
    sms_marketing_consent: Nested[MarketingConsent] = None
    default_address: Nested[Address] = None


class DeletedCustomer(ShopifyModel):
    """customers/delete: only the id."""

    id: ShopifyId


class LineItem(ShopifyModel):
    """An order, refund or checkout line; never carries product_type (products/* does)."""

    id: OptionalId = None
    product_id: OptionalId = None
    variant_id: OptionalId = None
    title: Text = None
    name: Text = None
    vendor: Text = None
    sku: Text = None
    quantity: int | None = None
    current_quantity: int | None = None
    price: Amount = None
    price_set: Nested[MoneyBag] = None
    total_discount: Amount = None
    gift_card: bool | None = None


class RefundLineItem(ShopifyModel):
    """One refunded line; `subtotal` and `total_tax` arrive as JSON numbers."""

    id: OptionalId = None
    line_item_id: OptionalId = None
    quantity: int | None = None
    restock_type: Text = None
    subtotal: Amount = None
    total_tax: Amount = None
    subtotal_set: Nested[MoneyBag] = None
    total_tax_set: Nested[MoneyBag] = None
    line_item: Nested[LineItem] = None


class Transaction(ShopifyModel):
    """A payment transaction attached to a refund."""

    id: OptionalId = None
    order_id: OptionalId = None
    kind: Text = None
    status: Text = None
    gateway: Text = None
    amount: Amount = None
    currency: Text = None
    # Where a payload carries it, the amount in shop and presentment money (`amount` is the
    # presentment currency's).
    amount_set: Nested[MoneyBag] = None
    created_at: Timestamp = None
    processed_at: Timestamp = None


class OrderAdjustment(ShopifyModel):
    """A refund adjustment not tied to a line (shipping refund, refund discrepancy)."""

    id: OptionalId = None
    order_id: OptionalId = None
    refund_id: OptionalId = None
    kind: Text = None
    reason: Text = None
    amount: Amount = None
    tax_amount: Amount = None
    amount_set: Nested[MoneyBag] = None
    tax_amount_set: Nested[MoneyBag] = None


class Refund(ShopifyModel):
    """refunds/create, and each entry of an order's `refunds`."""

    id: ShopifyId
    order_id: ShopifyId
    created_at: Timestamp = None
    processed_at: Timestamp = None
    refund_line_items: Items[RefundLineItem] = Field(default_factory=list)
    transactions: Items[Transaction] = Field(default_factory=list)
    order_adjustments: Items[OrderAdjustment] = Field(default_factory=list)


class Order(ShopifyModel):
    """orders/create|paid|updated|fulfilled|partially_fulfilled|cancelled (one body shape)."""

    id: ShopifyId
    admin_graphql_api_id: Text = None
    name: Text = None
    email: Text = None
    contact_email: Text = None
    customer: Nested[Customer] = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    processed_at: Timestamp = None
    cancelled_at: Timestamp = None
    closed_at: Timestamp = None
    cancel_reason: Text = None
    financial_status: Text = None
    fulfillment_status: Text = None
    currency: Text = None
    presentment_currency: Text = None
    total_price: Amount = None
    current_total_price: Amount = None
    subtotal_price: Amount = None
    current_subtotal_price: Amount = None
    total_discounts: Amount = None
    total_tax: Amount = None
    total_price_set: Nested[MoneyBag] = None
    current_total_price_set: Nested[MoneyBag] = None
    subtotal_price_set: Nested[MoneyBag] = None
    # Absent from 2026-04 on.
    checkout_id: OptionalId = None
    checkout_token: Text = None
    cart_token: Text = None
    source_name: Text = None
    tags: Tags = None
    test: bool | None = None
    line_items: Items[LineItem] = Field(default_factory=list)
    refunds: Items[Refund] = Field(default_factory=list)


class Checkout(ShopifyModel):
    """checkouts/create|update; key on `token`, since `id` is absent from 2026-04 on."""

    id: OptionalId = None
    token: Text = None
    cart_token: Text = None
    email: Text = None
    phone: Text = None
    customer: Nested[Customer] = None
    created_at: Timestamp = None
    updated_at: Timestamp = None
    completed_at: Timestamp = None
    closed_at: Timestamp = None
    currency: Text = None
    presentment_currency: Text = None
    total_price: Amount = None
    subtotal_price: Amount = None
    abandoned_checkout_url: Text = None
    source_name: Text = None
    buyer_accepts_marketing: bool | None = None
    line_items: Items[LineItem] = Field(default_factory=list)


class Product(ShopifyModel):
    """products/create|update: the catalog side that order lines lack (product_type)."""

    id: ShopifyId
    title: Text = None
    vendor: Text = None
    product_type: Text = None
    handle: Text = None
    status: Text = None
    tags: Tags = None
    created_at: Timestamp = None
    updated_at: Timestamp = None


# The newer topics use camelCase keys and GIDs; the snake_case names are accepted too.
_CUSTOMER_ID_KEYS = ("customerId", "customer_id")


class CustomerTagsChanged(ShopifyModel):
    """customer.tags_added / customer.tags_removed: the tags added or removed, as a list."""

    customer_id: ShopifyId = Field(validation_alias=AliasChoices(*_CUSTOMER_ID_KEYS))
    tags: Tags = None
    occurred_at: Timestamp = Field(default=None, validation_alias=AliasChoices("occurredAt"))


class EmailConsentUpdate(ShopifyModel):
    """customers_email_marketing_consent/update."""

    customer_id: ShopifyId = Field(validation_alias=AliasChoices(*_CUSTOMER_ID_KEYS))
    email_address: Text = None
    email_marketing_consent: Nested[MarketingConsent] = None


_SMS_CUSTOMER_ID_KEYS = ("id", *_CUSTOMER_ID_KEYS)


class SmsConsentUpdate(ShopifyModel):
    """customers_marketing_consent/update (SMS); the customer id is under `id` here."""

    customer_id: ShopifyId = Field(validation_alias=AliasChoices(*_SMS_CUSTOMER_ID_KEYS))
    phone: Text = None
    sms_marketing_consent: Nested[MarketingConsent] = None


class PurchasingSummary(ShopifyModel):
    """customers/purchasing_summary: the customer's order count and amount spent."""

    customer_id: ShopifyId = Field(validation_alias=AliasChoices(*_CUSTOMER_ID_KEYS))
    number_of_orders: int | None = Field(
        default=None, validation_alias=AliasChoices("numberOfOrders")
    )
    amount_spent: Nested[Money] = Field(default=None, validation_alias=AliasChoices("amountSpent"))
    last_order_id: OptionalId = Field(default=None, validation_alias=AliasChoices("lastOrderId"))
    occurred_at: Timestamp = Field(default=None, validation_alias=AliasChoices("occurredAt"))


class PrivacyCustomer(ShopifyModel):
    """The customer named by a privacy request."""

    id: ShopifyId
    email: Text = None
    phone: Text = None


class DataRequest(ShopifyModel):
    """The data request's own id."""

    id: OptionalId = None


class CustomerRedact(ShopifyModel):
    """customers/redact: erase this customer and these orders."""

    shop_id: ShopifyId
    shop_domain: Text = None
    customer: Nested[PrivacyCustomer] = None
    orders_to_redact: Items[ShopifyId] = Field(default_factory=list)


class CustomerDataRequest(ShopifyModel):
    """customers/data_request: export what is held about this customer."""

    shop_id: ShopifyId
    shop_domain: Text = None
    customer: Nested[PrivacyCustomer] = None
    orders_requested: Items[ShopifyId] = Field(default_factory=list)
    data_request: Nested[DataRequest] = None


class ShopRedact(ShopifyModel):
    """shop/redact: erase the shop."""

    shop_id: ShopifyId
    shop_domain: Text = None


TOPIC_MODELS: Mapping[str, type[ShopifyModel]] = MappingProxyType(
    {
        "orders/create": Order,
        "orders/paid": Order,
        "orders/updated": Order,
        "orders/fulfilled": Order,
        "orders/partially_fulfilled": Order,
        "orders/cancelled": Order,
        "refunds/create": Refund,
        "customers/create": Customer,
        "customers/update": Customer,
        "customers/enable": Customer,
        "customers/disable": Customer,
        "customers/delete": DeletedCustomer,
        "checkouts/create": Checkout,
        "checkouts/update": Checkout,
        "products/create": Product,
        "products/update": Product,
        "customer.tags_added": CustomerTagsChanged,
        "customer.tags_removed": CustomerTagsChanged,
        "customers_email_marketing_consent/update": EmailConsentUpdate,
        "customers_marketing_consent/update": SmsConsentUpdate,
        "customers/purchasing_summary": PurchasingSummary,
        "customers/data_request": CustomerDataRequest,
        "customers/redact": CustomerRedact,
        "shop/redact": ShopRedact,
    }
)

# Where each model's payload keeps the customer id: top-level keys, first present wins.
_TOP_LEVEL_CUSTOMER_ID_KEYS: Mapping[type[ShopifyModel], tuple[str, ...]] = MappingProxyType(
    {
        Customer: ("id",),
        DeletedCustomer: ("id",),
        CustomerTagsChanged: _CUSTOMER_ID_KEYS,
        EmailConsentUpdate: _CUSTOMER_ID_KEYS,
        SmsConsentUpdate: _SMS_CUSTOMER_ID_KEYS,
        PurchasingSummary: _CUSTOMER_ID_KEYS,
    }
)
_NESTED_CUSTOMER_MODELS: tuple[type[ShopifyModel], ...] = (
    Order,
    Checkout,
    CustomerRedact,
    CustomerDataRequest,
)


def _model_for(topic: str) -> type[ShopifyModel] | None:
    return TOPIC_MODELS.get(topic.strip().lower())


def _lenient_id(value: object) -> int | None:
    try:
        return parse_shopify_id(value)
    except ValueError:
        return None


def customer_id_of(topic: str, payload: Mapping[str, Any]) -> int | None:
    """The Shopify customer id the event is about, or None; never raises on odd input."""
    model = _model_for(topic)
    if model is None or not isinstance(payload, Mapping):
        return None
    if model in _NESTED_CUSTOMER_MODELS:
        customer = payload.get("customer")
        return _lenient_id(customer.get("id")) if isinstance(customer, Mapping) else None
    for key in _TOP_LEVEL_CUSTOMER_ID_KEYS.get(model, ()):
        if payload.get(key) is not None:
            return _lenient_id(payload[key])
    return None


def parse_payload(topic: str, payload: Mapping[str, Any]) -> ShopifyModel | None:
    """The typed model of a payload for its topic, or None for a topic segflow does not read.

    Raises pydantic.ValidationError when the payload is not an object, a present field has an
    impossible type, or the object's own id is missing.
    """
    model = _model_for(topic)
    if model is None:
        return None
    return model.model_validate(payload)
