"""A deterministic synthetic Shopify store: customers, skewed order histories, their webhooks.

Pure: the same seed, customer numbers and `now` give the same store and deliveries, byte for
byte. Each customer is built from its own seeded generator, so a range of customers can be
generated on its own (the cost curve seeds 1M customers in chunks). Payloads keep the REST
webhook shapes of services/demo/stream.py (API 2025-07), trimmed to the usual fields.
"""

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

API_VERSION = "2025-07"
CURRENCY = "USD"
CUSTOMER_BASE = 7_100_000_000_000
ORDER_BASE = 5_100_000_000_000
LINE_BASE = 13_100_000_000_000
PRODUCT_BASE = 8_100_000_000_000
REFUND_BASE = 9_100_000_000_000
# Room for every order of one customer, so ids never collide across customers.
ORDERS_PER_CUSTOMER_SLOT = 1_000
LINES_PER_ORDER_SLOT = 10
PRODUCT_TYPES = ("Apparel", "Shoes", "Accessories", "Home", "Beauty")
VENDORS = ("Northwind Apparel", "Stride Co", "Lumen Optics", "Harbor & Pine", "Casa Verde")
COUNTRIES = ("US", "US", "US", "CA", "GB", "DE", "AU", "FR")
PRODUCTS = 40
# Shopify-like rates: per order, per customer, per delivery.
CANCEL_RATE = 0.03
REFUND_RATE = 0.06
PAID_RATE = 0.92
UPDATE_RATE = 0.15
DUPLICATE_RATE = 0.01
OUT_OF_ORDER_RATE = 0.02
# Order counts follow a Pareto tail: about two thirds of customers order once.
ORDER_TAIL_EXPONENT = 0.6
MAX_ORDERS = 300
HISTORY_DAYS = 730


@dataclass(frozen=True)
class Product:
    id: int
    title: str
    product_type: str
    vendor: str
    price: Decimal


@dataclass(frozen=True)
class Line:
    id: int
    product: Product
    quantity: int


@dataclass(frozen=True)
class Order:
    id: int
    number: int
    placed_at: datetime
    lines: tuple[Line, ...]
    paid: bool
    cancelled_at: datetime | None
    refund_at: datetime | None

    @property
    def total(self) -> Decimal:
        return sum((line.product.price * line.quantity for line in self.lines), Decimal("0.00"))


@dataclass(frozen=True)
class Customer:
    id: int
    number: int
    email: str
    created_at: datetime
    country_code: str
    updated_at: datetime | None
    orders: tuple[Order, ...]


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery: the header values and the raw body."""

    topic: str
    customer_id: int | None
    event_id: str
    webhook_id: str
    triggered_at: datetime
    body: bytes
    duplicate: bool = False
    out_of_order: bool = False


def catalogue() -> tuple[Product, ...]:
    """The store's products (fixed: the same for every seed)."""
    return tuple(
        Product(
            PRODUCT_BASE + p,
            f"Product {p}",
            PRODUCT_TYPES[p % len(PRODUCT_TYPES)],
            VENDORS[p % len(VENDORS)],
            Decimal(9 + (p * 37) % 240) + Decimal("0.95"),
        )
        for p in range(PRODUCTS)
    )


def order_count(rng: random.Random) -> int:
    """Orders of one customer: most 1, a long Pareto tail up to MAX_ORDERS."""
    return min(MAX_ORDERS, int(1 / (1 - rng.random()) ** ORDER_TAIL_EXPONENT))


def customer(seed: int, number: int, now: datetime, products: tuple[Product, ...]) -> Customer:
    """Customer `number` of the store with this seed, its orders placed before `now`."""
    rng = random.Random(seed * 1_000_003 + number)
    customer_id = CUSTOMER_BASE + number
    created = now - timedelta(seconds=rng.randrange(3600, HISTORY_DAYS * 86400))
    created = created.replace(microsecond=0)
    orders = []
    first_order = ORDER_BASE + number * ORDERS_PER_CUSTOMER_SLOT
    for i in range(order_count(rng)):
        span = int((now - created).total_seconds())
        placed = created + timedelta(seconds=rng.randrange(60, max(61, span)))
        order_id = first_order + i
        lines = tuple(
            Line(
                LINE_BASE + (order_id - ORDER_BASE) * LINES_PER_ORDER_SLOT + j,
                # Low indices sell most (a skewed catalogue).
                products[int(len(products) * rng.random() ** 2)],
                rng.choice((1, 1, 1, 2)),
            )
            for j in range(rng.choice((1, 1, 1, 2, 2, 3, 4)))
        )
        cancelled = rng.random() < CANCEL_RATE
        refunded = not cancelled and rng.random() < REFUND_RATE
        orders.append(
            Order(
                order_id,
                1001 + i,
                placed,
                lines,
                paid=not cancelled and rng.random() < PAID_RATE,
                # Never after `now`: ingest refuses a trigger time from the future.
                cancelled_at=min(placed + timedelta(hours=2), now) if cancelled else None,
                refund_at=(
                    min(placed + timedelta(days=rng.randrange(1, 20)), now) if refunded else None
                ),
            )
        )
    orders.sort(key=lambda order: order.placed_at)
    updated = None
    if rng.random() < UPDATE_RATE:
        updated = created + timedelta(
            seconds=rng.randrange(60, max(61, int((now - created).total_seconds())))
        )
    return Customer(
        customer_id,
        number,
        f"customer.{number}@example.com",
        created,
        rng.choice(COUNTRIES),
        updated,
        tuple(orders),
    )


def customers(seed: int, numbers: Iterable[int], now: datetime) -> Iterator[Customer]:
    """The customers with these numbers, generated lazily."""
    products = catalogue()
    for number in numbers:
        yield customer(seed, number, now, products)


def product_deliveries(seed: int, now: datetime) -> list[Delivery]:
    """products/create for the catalogue: order lines lack product types, these carry them."""
    rng = random.Random(seed)
    listed = (now - timedelta(days=HISTORY_DAYS + 30)).replace(microsecond=0)
    return [
        _delivery(rng, "products/create", None, listed, _product_payload(p, listed))
        for p in catalogue()
    ]


def deliveries(seed: int, people: Iterable[Customer]) -> list[Delivery]:
    """Every webhook of these customers in delivery order, with duplicates and reorderings."""
    rng = random.Random(seed ^ 0x5EED)
    timeline: list[tuple[datetime, int, Delivery]] = []
    for person in people:
        events = _customer_events(rng, person)
        slots = [delivery.triggered_at for delivery in events]
        # A delivery that overtakes the customer's previous one (Shopify does not order
        # them): it takes the earlier one's slot in the delivery order.
        for i in range(1, len(events)):
            if rng.random() < OUT_OF_ORDER_RATE:
                late, early = events[i - 1], events[i]
                events[i - 1] = replace(early, out_of_order=True)
                events[i] = late
        for slot, delivery in zip(slots, events, strict=True):
            timeline.append((slot, len(timeline), delivery))
    timeline.sort(key=lambda item: (item[0], item[1]))
    out: list[Delivery] = []
    for _, _, delivery in timeline:
        out.append(delivery)
        if rng.random() < DUPLICATE_RATE:
            out.append(replace(delivery, duplicate=True))
    return out


def _customer_events(rng: random.Random, person: Customer) -> list[Delivery]:
    events = [
        _delivery(rng, "customers/create", person.id, person.created_at, _customer_payload(person))
    ]
    for order in person.orders:
        body = _order_payload(person, order)
        events.append(_delivery(rng, "orders/create", person.id, order.placed_at, body))
        if order.paid:
            paid_at = order.placed_at + timedelta(seconds=4)
            paid = {**body, "financial_status": "paid", "updated_at": _time(paid_at)}
            events.append(_delivery(rng, "orders/paid", person.id, paid_at, paid))
        if order.cancelled_at is not None:
            cancelled = _cancelled(body, order.cancelled_at)
            events.append(
                _delivery(rng, "orders/cancelled", person.id, order.cancelled_at, cancelled)
            )
        if order.refund_at is not None:
            refund = _refund(order, order.refund_at)
            events.append(_delivery(rng, "refunds/create", person.id, order.refund_at, refund))
            updated_at = order.refund_at + timedelta(seconds=1)
            refunded = _refunded(body, order, refund, updated_at)
            events.append(_delivery(rng, "orders/updated", person.id, updated_at, refunded))
    if person.updated_at is not None:
        payload = _customer_payload(person, person.updated_at)
        events.append(_delivery(rng, "customers/update", person.id, person.updated_at, payload))
    events.sort(key=lambda delivery: delivery.triggered_at)
    return events


def _delivery(
    rng: random.Random, topic: str, customer_id: int | None, at: datetime, payload: Any
) -> Delivery:
    return Delivery(
        topic, customer_id, _uuid(rng), _uuid(rng), at.astimezone(UTC), encode_json(payload)
    )


def encode_json(value: Any) -> bytes:
    """Compact JSON (money is already text, so the C encoder suffices)."""
    return json.dumps(value, separators=(",", ":")).encode()


def _uuid(rng: random.Random) -> str:
    value = f"{rng.getrandbits(128):032x}"
    return f"{value[:8]}-{value[8:12]}-4{value[13:16]}-a{value[17:20]}-{value[20:]}"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _money(amount: Decimal) -> str:
    return str(amount.quantize(Decimal("0.01")))


def _money_set(amount: Decimal) -> dict[str, Any]:
    money = {"amount": _money(amount), "currency_code": CURRENCY}
    return {"shop_money": money, "presentment_money": money}


def _address(person: Customer) -> dict[str, Any]:
    return {
        "city": f"City {person.number % 97}",
        "province": None,
        "province_code": None,
        "country": person.country_code,
        "country_code": person.country_code,
        "zip": f"{10000 + person.number % 89999}",
    }


def _customer_payload(person: Customer, updated: datetime | None = None) -> dict[str, Any]:
    return {
        "id": person.id,
        "admin_graphql_api_id": f"gid://shopify/Customer/{person.id}",
        "email": person.email,
        "first_name": f"First{person.number % 1000}",
        "last_name": f"Last{person.number % 777}",
        "state": "enabled",
        "verified_email": True,
        "created_at": _time(person.created_at),
        "updated_at": _time(updated or person.created_at),
        "currency": CURRENCY,
        "phone": None,
        "note": None,
        "tax_exempt": False,
        "default_address": _address(person),
    }


def _line_item(line: Line) -> dict[str, Any]:
    product = line.product
    return {
        "id": line.id,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{line.id}",
        "product_id": product.id,
        "variant_id": product.id + 1_000_000,
        "title": product.title,
        "name": product.title,
        "vendor": product.vendor,
        "sku": f"SKU-{product.id % 10_000}",
        "quantity": line.quantity,
        "current_quantity": line.quantity,
        "price": _money(product.price),
        "price_set": _money_set(product.price),
        "total_discount": "0.00",
        "gift_card": False,
        "requires_shipping": True,
        "taxable": True,
        "fulfillment_status": None,
    }


def _order_payload(person: Customer, order: Order) -> dict[str, Any]:
    total = order.total
    stamp = _time(order.placed_at)
    return {
        "id": order.id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order.id}",
        "name": f"#{order.number}",
        "order_number": order.number,
        "email": person.email,
        "contact_email": person.email,
        "created_at": stamp,
        "updated_at": stamp,
        "processed_at": stamp,
        "cancelled_at": None,
        "cancel_reason": None,
        "closed_at": None,
        "confirmed": True,
        "currency": CURRENCY,
        "presentment_currency": CURRENCY,
        "financial_status": "pending",
        "fulfillment_status": None,
        "source_name": "web",
        "tags": "",
        "test": False,
        "total_price": _money(total),
        "subtotal_price": _money(total),
        "current_total_price": _money(total),
        "current_subtotal_price": _money(total),
        "total_discounts": "0.00",
        "total_tax": "0.00",
        "total_price_set": _money_set(total),
        "current_total_price_set": _money_set(total),
        "subtotal_price_set": _money_set(total),
        "customer": _customer_payload(person),
        "billing_address": _address(person),
        "shipping_address": _address(person),
        "line_items": [_line_item(line) for line in order.lines],
        "refunds": [],
        "discount_codes": [],
        "shipping_lines": [],
        "tax_lines": [],
    }


def _cancelled(body: dict[str, Any], at: datetime) -> dict[str, Any]:
    stamp = _time(at)
    # total_price keeps what was ordered; the current_* amounts drop to zero.
    return {
        **body,
        "cancel_reason": "customer",
        "cancelled_at": stamp,
        "closed_at": stamp,
        "updated_at": stamp,
        "financial_status": "voided",
        "current_total_price": "0.00",
        "current_subtotal_price": "0.00",
        "current_total_price_set": _money_set(Decimal(0)),
        "line_items": [{**item, "current_quantity": 0} for item in body["line_items"]],
    }


def _refund(order: Order, at: datetime) -> dict[str, Any]:
    line = order.lines[0]
    amount = line.product.price
    refund_id = REFUND_BASE + order.id - ORDER_BASE
    stamp = _time(at)
    return {
        "id": refund_id,
        "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}",
        "order_id": order.id,
        "created_at": stamp,
        "processed_at": stamp,
        "note": "Did not fit",
        "restock": True,
        "user_id": None,
        "order_adjustments": [],
        "refund_line_items": [
            {
                "id": refund_id,
                "line_item_id": line.id,
                "quantity": 1,
                "restock_type": "return",
                # Shopify sends these two as JSON numbers; strings keep them exact here.
                "subtotal": _money(amount),
                "total_tax": "0.00",
                "subtotal_set": _money_set(amount),
                "total_tax_set": _money_set(Decimal(0)),
                "line_item": _line_item(line),
            }
        ],
        "transactions": [
            {
                "id": refund_id,
                "order_id": order.id,
                "kind": "refund",
                "status": "success",
                "gateway": "shopify_payments",
                "amount": _money(amount),
                "currency": CURRENCY,
                "created_at": stamp,
                "processed_at": stamp,
            }
        ],
    }


def _refunded(
    body: dict[str, Any], order: Order, refund: dict[str, Any], at: datetime
) -> dict[str, Any]:
    left = order.total - order.lines[0].product.price
    first = body["line_items"][0]
    items = [{**first, "current_quantity": first["quantity"] - 1}, *body["line_items"][1:]]
    return {
        **body,
        "updated_at": _time(at),
        "financial_status": "partially_refunded",
        "current_total_price": _money(left),
        "current_subtotal_price": _money(left),
        "current_total_price_set": _money_set(left),
        "line_items": items,
        "refunds": [refund],
    }


def _product_payload(product: Product, listed: datetime) -> dict[str, Any]:
    return {
        "id": product.id,
        "admin_graphql_api_id": f"gid://shopify/Product/{product.id}",
        "title": product.title,
        "vendor": product.vendor,
        "product_type": product.product_type,
        "handle": f"product-{product.id % 10_000}",
        "status": "active",
        "tags": "",
        "created_at": _time(listed),
        "updated_at": _time(listed),
    }


def _gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def _money_bag(amount: Decimal) -> dict[str, Any]:
    return {"shopMoney": {"amount": _money(amount), "currencyCode": CURRENCY}}


def bulk_lines(people: Iterable[Customer], *, with_products: bool) -> Iterator[str]:
    """The same orders as an Admin GraphQL bulk export (JSONL lines), for the importer."""
    if with_products:
        for product in catalogue():
            yield encode_json(
                {
                    "id": _gid("Product", product.id),
                    "title": product.title,
                    "vendor": product.vendor,
                    "productType": product.product_type,
                    "updatedAt": "2020-01-01T00:00:00Z",
                }
            ).decode()
    for person in people:
        for order in person.orders:
            refunds = []
            if order.refund_at is not None:
                refunds.append(
                    {
                        "id": _gid("Refund", REFUND_BASE + order.id - ORDER_BASE),
                        "createdAt": _time(order.refund_at),
                        "totalRefundedSet": _money_bag(order.lines[0].product.price),
                    }
                )
            current = Decimal(0) if order.cancelled_at else order.total
            if order.refund_at is not None:
                current -= order.lines[0].product.price
            yield encode_json(
                {
                    "id": _gid("Order", order.id),
                    "name": f"#{order.number}",
                    "email": person.email,
                    "createdAt": _time(order.placed_at),
                    "updatedAt": _time(order.refund_at or order.cancelled_at or order.placed_at),
                    "processedAt": _time(order.placed_at),
                    "cancelledAt": _time(order.cancelled_at) if order.cancelled_at else None,
                    "currencyCode": CURRENCY,
                    "test": False,
                    "totalPriceSet": _money_bag(order.total),
                    "currentTotalPriceSet": _money_bag(current),
                    "customer": {"id": _gid("Customer", person.id)},
                    "refunds": refunds,
                }
            ).decode()
            for line in order.lines:
                yield encode_json(
                    {
                        "id": _gid("LineItem", line.id),
                        "title": line.product.title,
                        "quantity": line.quantity,
                        "currentQuantity": line.quantity,
                        "vendor": line.product.vendor,
                        "product": {"id": _gid("Product", line.product.id)},
                        "originalUnitPriceSet": _money_bag(line.product.price),
                        "__parentId": _gid("Order", order.id),
                    }
                ).decode()


def new_order_delivery(rng: random.Random, number: int, index: int, now: datetime) -> Delivery:
    """Order `index` of customer `number`, placed now, as orders/create; index 0 on a customer
    with no history is a first order, which always changes some memberships."""
    products = catalogue()
    person = Customer(
        CUSTOMER_BASE + number, number, f"customer.{number}@example.com", now, "US", None, ()
    )
    order_id = ORDER_BASE + number * ORDERS_PER_CUSTOMER_SLOT + index
    line = Line(
        LINE_BASE + (order_id - ORDER_BASE) * LINES_PER_ORDER_SLOT,
        products[int(len(products) * rng.random() ** 2)],
        rng.choice((1, 1, 2)),
    )
    order = Order(
        order_id, 1001 + index, now, (line,), paid=False, cancelled_at=None, refund_at=None
    )
    return _delivery(rng, "orders/create", person.id, now, _order_payload(person, order))
