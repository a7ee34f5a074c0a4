"""Deterministic stream of Shopify webhooks (API 2025-07 shapes) for `segflow demo`.

Pure: the same seed and base time always give the same webhooks, byte for byte.
"""

import random
import unicodedata
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from services.common.jsontext import encode_json

API_VERSION = "2025-07"
CURRENCY = "USD"
# The demo shop keeps Eastern Standard Time; order and customer timestamps carry its offset.
SHOP_TZ = timezone(timedelta(hours=-5))
SHOP_DOMAIN = "segflow-demo.myshopify.com"
MIN_CUSTOMERS = 4

# Real Shopify ids are above 2^53; these bases come from Shopify's published samples.
ORDER_ID_BASE = 820982911946154508
CUSTOMER_ID_BASE = 706405506930370084
ADDRESS_ID_BASE = 715243470612851245
PRODUCT_ID_BASE = 788032119674292922
VARIANT_ID_BASE = 642667041472713922
INVENTORY_ITEM_ID_BASE = 477138163487183912
LINE_ITEM_ID_BASE = 487817672276298554
SHIPPING_LINE_ID_BASE = 271878346596884015
REFUND_ID_BASE = 890088186047892319
REFUND_LINE_ID_BASE = 866550311766439020
TRANSACTION_ID_BASE = 245135271310201194
CHECKOUT_ID_BASE = 981820079255243537
POS_LOCATION_ID = 655441491
SHIPPING_FEE = Decimal("10.00")
FREE_SHIPPING_FROM = Decimal("100.00")
CENT = Decimal("0.01")
ZERO = Decimal("0.00")


@dataclass(frozen=True)
class DemoWebhook:
    """One signed-to-be delivery: the headers' values and the raw JSON body."""

    topic: str
    webhook_id: str
    event_id: str
    triggered_at: datetime
    api_version: str
    body: bytes


@dataclass(frozen=True)
class _Variant:
    id: int
    title: str
    sku: str
    price: Decimal
    position: int


@dataclass(frozen=True)
class _Product:
    id: int
    title: str
    product_type: str
    vendor: str
    grams: int
    variants: tuple[_Variant, ...]


@dataclass(frozen=True)
class _Location:
    address1: str
    city: str
    province: str | None
    province_code: str | None
    zip: str
    country: str
    country_code: str


@dataclass(frozen=True)
class _Customer:
    id: int
    first_name: str
    last_name: str
    email: str
    created_at: datetime
    location: _Location


@dataclass(frozen=True)
class _Line:
    product: _Product
    variant: _Variant
    quantity: int


@dataclass(frozen=True)
class _OrderPlan:
    at: datetime
    customer: _Customer | None
    lines: tuple[_Line, ...]
    source_name: str = "web"
    cancel_at: datetime | None = None
    refund_at: datetime | None = None


@dataclass(frozen=True)
class _Event:
    at: datetime
    topic: str
    payload: dict[str, Any]


# (title, product_type, vendor, grams, price, variant titles)
_CATALOGUE: tuple[tuple[str, str, str, int, str, tuple[str, ...]], ...] = (
    ("Classic Crew T-Shirt", "Apparel", "Northwind Apparel", 180, "24.99", ("S", "M", "L")),
    ("Merino Wool Sweater", "Apparel", "Northwind Apparel", 420, "89.95", ("S", "M", "L")),
    ("Selvedge Denim Jacket", "Apparel", "Harbor & Pine", 900, "149.00", ("M", "L")),
    ("Trail Running Shoes", "Shoes", "Stride Co", 650, "129.95", ("US 8", "US 9", "US 10")),
    ("Leather Chelsea Boots", "Shoes", "Stride Co", 1100, "219.00", ("US 9", "US 10")),
    ("Aviator Sunglasses", "Accessories", "Lumen Optics", 100, "89.99", ("Default Title",)),
    ("Canvas Weekender Bag", "Accessories", "Harbor & Pine", 1300, "175.00", ("Default Title",)),
    ("Swiss Automatic Watch", "Accessories", "Lumen Optics", 160, "1250.00", ("Default Title",)),
    ("Linen Duvet Cover", "Home", "Casa Verde", 1500, "139.00", ("Queen", "King")),
    ("Ceramic Pour-Over Set", "Home", "Casa Verde", 800, "48.50", ("Default Title",)),
    ("Mid-century Lounge Chair", "Home", "Casa Verde", 14000, "649.00", ("Default Title",)),
)
_SUNGLASSES = 5
_WATCH = 7

_LOCATIONS: tuple[_Location, ...] = (
    _Location("350 Fifth Avenue", "New York", "New York", "NY", "10118", "United States", "US"),
    _Location("200 N Spring St", "Los Angeles", "California", "CA", "90012", "United States", "US"),
    _Location("233 S Wacker Dr", "Chicago", "Illinois", "IL", "60606", "United States", "US"),
    _Location("301 Congress Ave", "Austin", "Texas", "TX", "78701", "United States", "US"),
    _Location("290 Bremner Blvd", "Toronto", "Ontario", "ON", "M5V 3L9", "Canada", "CA"),
    _Location("800 Robson St", "Vancouver", "British Columbia", "BC", "V6Z 3B7", "Canada", "CA"),
    # Shopify keeps no province for these countries: null is what real payloads carry.
    _Location("10 Downing Street", "London", None, None, "SW1A 2AA", "United Kingdom", "GB"),
    _Location("Marienplatz 8", "München", None, None, "80331", "Germany", "DE"),
    _Location("1 Century Ave", "Shanghai", "Shanghai", "SH", "200120", "China", "CN"),
    _Location("1 Jianguomenwai Ave", "Beijing", "Beijing", "BJ", "100004", "China", "CN"),
)

_FIRST_NAMES = tuple(
    "Olivia Liam Emma Noah Ava Mateo Sofia Lucas Mia Ethan Chloé Wei Hannah Jonas Priya".split()
)
_LAST_NAMES = tuple(
    "Smith Johnson García Chen Müller Brown Wilson Taylor Li Schmidt Martin Nguyen".split()
)
_TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def demo_stream(seed: int, now: datetime, customers: int = 20) -> list[DemoWebhook]:
    """Build the demo's webhooks in delivery order; `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if customers < MIN_CUSTOMERS:
        raise ValueError(f"customers must be at least {MIN_CUSTOMERS}")
    now = now.astimezone(UTC).replace(microsecond=0)
    rng = random.Random(seed)

    products = _catalogue()
    people = _customers(rng, now, customers)
    listed_at = now - timedelta(days=800)
    events = [_Event(listed_at, "products/create", _product(p, listed_at)) for p in products]
    for person in people:
        events.extend(_customer_events(rng, person))
    # One customer moves city after their last order (orders stop an hour before `now`).
    mover = people[MIN_CUSTOMERS - 1]
    moved = replace(mover, location=_moved(rng, mover.location))
    events.append(_customer_update(moved, now - timedelta(minutes=30)))
    plans = _order_plans(rng, now, products, people)
    events.extend(_order_events(rng, plans))
    events.extend(_checkout_events(rng, now, products, people))
    events.sort(key=lambda event: event.at)  # stable: same-time events keep their order
    return _deliveries(rng, events)


def _deliveries(rng: random.Random, events: list[_Event]) -> list[DemoWebhook]:
    # Shopify's X-Shopify-Triggered-At is when the event happened (ingest records it as
    # occurred_at), so the replayed history keeps its own times rather than "now".
    webhooks = [
        DemoWebhook(
            topic=event.topic,
            webhook_id=_uuid(rng),
            event_id=_uuid(rng),
            triggered_at=event.at.astimezone(UTC),
            api_version=API_VERSION,
            body=encode_json(event.payload),
        )
        for event in events
    ]
    # A retry is the same delivery again: same webhook id, event id, time and body.
    first_paid = next(w for w in webhooks if w.topic == "orders/paid")
    webhooks.append(first_paid)
    return webhooks


def _catalogue() -> list[_Product]:
    products: list[_Product] = []
    variant_number = 0
    for index, (title, product_type, vendor, grams, price, sizes) in enumerate(_CATALOGUE):
        variants = []
        for position, size in enumerate(sizes, start=1):
            sku = f"{vendor[:3].upper()}-{index + 1:03d}-{position}"
            variants.append(
                _Variant(VARIANT_ID_BASE + variant_number, size, sku, Decimal(price), position)
            )
            variant_number += 1
        products.append(
            _Product(PRODUCT_ID_BASE + index, title, product_type, vendor, grams, tuple(variants))
        )
    return products


def _customers(rng: random.Random, now: datetime, count: int) -> list[_Customer]:
    people = []
    for n in range(count):
        if n < MIN_CUSTOMERS:
            # The scripted customers (VIP, frequent, refund, cancel) need some history.
            age = timedelta(days=rng.uniform(90, 730))
        elif n == count - 1:
            age = timedelta(days=rng.uniform(1, 10))  # a brand-new sign-up with no order yet
        else:
            age = timedelta(days=rng.uniform(0.5, 730))
        first = rng.choice(_FIRST_NAMES)
        last = rng.choice(_LAST_NAMES)
        email = f"{_ascii(first)}.{_ascii(last)}.{n + 1}@example.com".lower()
        created = (now - age).replace(microsecond=0)
        people.append(
            _Customer(CUSTOMER_ID_BASE + n, first, last, email, created, rng.choice(_LOCATIONS))
        )
    return people


def _order_plans(
    rng: random.Random, now: datetime, products: list[_Product], people: list[_Customer]
) -> list[_OrderPlan]:
    plans: list[_OrderPlan] = []
    last = len(people) - 1
    for index, person in enumerate(people):
        count = 0 if index == last and index >= MIN_CUSTOMERS else rng.choice((0, 1, 1, 2, 2, 3, 5))
        for _ in range(count):
            at = _between(rng, person.created_at + timedelta(hours=1), now - timedelta(hours=1))
            plans.append(_OrderPlan(at, person, _random_lines(rng, products)))

    vip, frequent, refunded, cancelled = people[:MIN_CUSTOMERS]
    big = (
        _Line(products[_WATCH], products[_WATCH].variants[0], 1),
        *_random_lines(rng, products, 1),
    )
    plans.append(_OrderPlan(_between(rng, vip.created_at, now - timedelta(days=2)), vip, big))
    for _ in range(4):  # more than three orders in the last month: "high frequency"
        at = _between(rng, now - timedelta(days=28), now - timedelta(hours=2))
        plans.append(_OrderPlan(at, frequent, _random_lines(rng, products)))
    sunglasses = products[_SUNGLASSES]
    refund_lines = (_Line(sunglasses, sunglasses.variants[0], 1), *_random_lines(rng, products, 1))
    refund_order_at = now - timedelta(days=40)
    plans.append(
        _OrderPlan(refund_order_at, refunded, refund_lines, refund_at=now - timedelta(days=35))
    )
    cancel_order_at = now - timedelta(days=3)
    plans.append(
        _OrderPlan(
            cancel_order_at,
            cancelled,
            _random_lines(rng, products),
            cancel_at=cancel_order_at + timedelta(hours=2),
        )
    )
    for _ in range(2):  # point-of-sale sales with no customer attached
        at = _between(rng, now - timedelta(days=60), now - timedelta(hours=1))
        plans.append(_OrderPlan(at, None, _random_lines(rng, products), source_name="pos"))
    plans.sort(key=lambda plan: plan.at)
    return plans


def _random_lines(
    rng: random.Random, products: list[_Product], count: int | None = None
) -> tuple[_Line, ...]:
    lines = []
    for _ in range(count if count is not None else rng.randint(1, 3)):
        product = rng.choice(products)
        lines.append(_Line(product, rng.choice(product.variants), rng.choice((1, 1, 1, 2))))
    return tuple(lines)


def _order_events(rng: random.Random, plans: list[_OrderPlan]) -> list[_Event]:
    events: list[_Event] = []
    line_number = 0
    for index, plan in enumerate(plans):
        order_id = ORDER_ID_BASE + index
        line_ids = [LINE_ITEM_ID_BASE + line_number + i for i in range(len(plan.lines))]
        line_number += len(plan.lines)
        order = _order(rng, plan, order_id, 1001 + index, line_ids)
        events.append(_Event(plan.at, "orders/create", order))
        if plan.cancel_at is not None:
            # Cancelled before payment was captured: voided, and nothing was ever paid.
            events.append(
                _Event(plan.cancel_at, "orders/cancelled", _cancelled(order, plan.cancel_at))
            )
            continue
        paid_at = plan.at + timedelta(seconds=4)
        paid = {**order, "financial_status": "paid", "total_outstanding": "0.00"}
        paid["updated_at"] = _shop_time(paid_at)
        events.append(_Event(paid_at, "orders/paid", paid))
        if plan.refund_at is not None:
            refund = _refund(paid, order_id, plan.refund_at, line_index=0)
            events.append(_Event(plan.refund_at, "refunds/create", refund))
            updated_at = plan.refund_at + timedelta(seconds=1)
            events.append(_Event(updated_at, "orders/updated", _refunded(paid, refund, updated_at)))
    return events


def _order(
    rng: random.Random, plan: _OrderPlan, order_id: int, number: int, line_ids: list[int]
) -> dict[str, Any]:
    subtotal = sum((line.variant.price * line.quantity for line in plan.lines), ZERO)
    pos = plan.source_name == "pos"
    shipping = ZERO if pos or subtotal >= FREE_SHIPPING_FROM else SHIPPING_FEE
    total = subtotal + shipping
    person = plan.customer
    email = person.email if person else ""
    token = f"{rng.getrandbits(128):032x}"
    checkout_token = None if pos else f"{rng.getrandbits(128):032x}"
    address = _order_address(person) if person else None
    stamp = _shop_time(plan.at)
    status_page = f"https://{SHOP_DOMAIN}/548380009/orders/{token}"
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "app_id": 129785 if pos else 580111,
        "browser_ip": None,
        "buyer_accepts_marketing": False,
        "cancel_reason": None,
        "cancelled_at": None,
        "cart_token": None,
        "checkout_id": None if pos else CHECKOUT_ID_BASE + 100 + number,
        "checkout_token": checkout_token,
        "client_details": None,
        "closed_at": None,
        "confirmation_number": "".join(rng.choice(_TOKEN_ALPHABET) for _ in range(9)),
        "confirmed": True,
        "contact_email": email or None,
        "created_at": stamp,
        "currency": CURRENCY,
        "current_shipping_price_set": _money_set(shipping),
        "current_subtotal_price": _money(subtotal),
        "current_subtotal_price_set": _money_set(subtotal),
        "current_total_additional_fees_set": None,
        "current_total_discounts": "0.00",
        "current_total_discounts_set": _money_set(ZERO),
        "current_total_duties_set": None,
        "current_total_price": _money(total),
        "current_total_price_set": _money_set(total),
        "current_total_tax": "0.00",
        "current_total_tax_set": _money_set(ZERO),
        "customer_locale": "en",
        "device_id": None,
        "discount_codes": [],
        "duties_included": False,
        "email": email,
        "estimated_taxes": False,
        "financial_status": "pending",
        "fulfillment_status": None,
        "landing_site": None,
        "landing_site_ref": None,
        "location_id": POS_LOCATION_ID if pos else None,
        "merchant_business_entity_id": "MTU0ODM4MDAwOQ",
        "merchant_of_record_app_id": None,
        "name": f"#{number}",
        "note": None,
        "note_attributes": [],
        "number": number - 1000,
        "order_number": number,
        "order_status_url": f"{status_page}/authenticate?key={token[:16]}",
        "original_total_additional_fees_set": None,
        "original_total_duties_set": None,
        "payment_gateway_names": ["cash"] if pos else ["shopify_payments"],
        "phone": None,
        "po_number": None,
        "presentment_currency": CURRENCY,
        "processed_at": stamp,
        "reference": None,
        "referring_site": None,
        "source_identifier": None,
        "source_name": plan.source_name,
        "source_url": None,
        "subtotal_price": _money(subtotal),
        "subtotal_price_set": _money_set(subtotal),
        "tags": "",
        "tax_exempt": False,
        "tax_lines": [],
        "taxes_included": False,
        "test": False,
        "token": token,
        "total_cash_rounding_payment_adjustment_set": _money_set(ZERO),
        "total_cash_rounding_refund_adjustment_set": _money_set(ZERO),
        "total_discounts": "0.00",
        "total_discounts_set": _money_set(ZERO),
        "total_line_items_price": _money(subtotal),
        "total_line_items_price_set": _money_set(subtotal),
        "total_outstanding": _money(total),
        "total_price": _money(total),
        "total_price_set": _money_set(total),
        "total_shipping_price_set": _money_set(shipping),
        "total_tax": "0.00",
        "total_tax_set": _money_set(ZERO),
        "total_tip_received": "0.00",
        "total_weight": sum(line.product.grams * line.quantity for line in plan.lines),
        "updated_at": stamp,
        "user_id": None,
        "billing_address": address,
        "customer": _customer_payload(person, updated=None, embedded=True) if person else None,
        "discount_applications": [],
        "fulfillments": [],
        "line_items": [
            _line_item(line, line_id) for line, line_id in zip(plan.lines, line_ids, strict=True)
        ],
        "payment_terms": None,
        "refunds": [],
        "shipping_address": None if pos else address,
        "shipping_lines": [] if pos else [_shipping_line(order_id, shipping)],
        "returns": [],
    }


def _line_item(line: _Line, line_id: int) -> dict[str, Any]:
    name = line.product.title
    if line.variant.title != "Default Title":
        name = f"{name} - {line.variant.title}"
    return {
        "id": line_id,
        "admin_graphql_api_id": f"gid://shopify/LineItem/{line_id}",
        "attributed_staffs": [],
        "current_quantity": line.quantity,
        "fulfillable_quantity": line.quantity,
        "fulfillment_service": "manual",
        "fulfillment_status": None,
        "gift_card": False,
        "grams": line.product.grams,
        "name": name,
        "price": _money(line.variant.price),
        "price_set": _money_set(line.variant.price),
        "product_exists": True,
        "product_id": line.product.id,
        "properties": [],
        "quantity": line.quantity,
        "requires_shipping": True,
        "sales_line_item_group_id": None,
        "sku": line.variant.sku,
        "taxable": True,
        "title": line.product.title,
        "total_discount": "0.00",
        "total_discount_set": _money_set(ZERO),
        "variant_id": line.variant.id,
        "variant_inventory_management": "shopify",
        "variant_title": None if line.variant.title == "Default Title" else line.variant.title,
        "vendor": line.product.vendor,
        "tax_lines": [],
        "duties": [],
        "discount_allocations": [],
    }


def _shipping_line(order_id: int, price: Decimal) -> dict[str, Any]:
    line_id = SHIPPING_LINE_ID_BASE + order_id - ORDER_ID_BASE
    title = "Free Shipping" if price == ZERO else "Standard"
    return {
        "id": line_id,
        "carrier_identifier": None,
        "code": title,
        "current_discounted_price_set": _money_set(price),
        "discounted_price": _money(price),
        "discounted_price_set": _money_set(price),
        "is_removed": False,
        "phone": None,
        "price": _money(price),
        "price_set": _money_set(price),
        "requested_fulfillment_service_id": None,
        "source": "shopify",
        "title": title,
        "tax_lines": [],
        "discount_allocations": [],
    }


def _cancelled(order: dict[str, Any], at: datetime) -> dict[str, Any]:
    stamp = _shop_time(at)
    items = [
        {**item, "current_quantity": 0, "fulfillable_quantity": 0} for item in order["line_items"]
    ]
    # total_price keeps what was ordered; the current_* amounts drop to zero.
    return {
        **order,
        "cancel_reason": "customer",
        "cancelled_at": stamp,
        "closed_at": stamp,
        "updated_at": stamp,
        "financial_status": "voided",
        "current_subtotal_price": "0.00",
        "current_subtotal_price_set": _money_set(ZERO),
        "current_total_price": "0.00",
        "current_total_price_set": _money_set(ZERO),
        "current_shipping_price_set": _money_set(ZERO),
        "total_outstanding": "0.00",
        "line_items": items,
    }


def _refund(order: dict[str, Any], order_id: int, at: datetime, line_index: int) -> dict[str, Any]:
    item = order["line_items"][line_index]
    amount = Decimal(item["price"])
    refund_id = REFUND_ID_BASE + order_id - ORDER_ID_BASE
    transaction_id = TRANSACTION_ID_BASE + order_id - ORDER_ID_BASE
    stamp = _shop_time(at)
    line_item = {key: value for key, value in item.items() if key != "current_quantity"}
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": stamp,
        "note": "Arrived scratched",
        "user_id": None,
        "processed_at": stamp,
        "duties": [],
        "total_duties_set": _money_set(ZERO),
        "return": None,
        "restock": False,
        "refund_shipping_lines": [],
        "admin_graphql_api_id": f"gid://shopify/Refund/{refund_id}",
        "order_adjustments": [],
        "refund_line_items": [
            {
                "id": REFUND_LINE_ID_BASE + order_id - ORDER_ID_BASE,
                "quantity": 1,
                "line_item_id": item["id"],
                "location_id": None,
                "restock_type": "no_restock",
                # Shopify sends these two as JSON numbers; Decimal keeps the exact digits.
                "subtotal": amount,
                "total_tax": ZERO,
                "subtotal_set": _money_set(amount),
                "total_tax_set": _money_set(ZERO),
                "line_item": line_item,
            }
        ],
        "transactions": [
            {
                "id": transaction_id,
                "order_id": order_id,
                "kind": "refund",
                "gateway": "shopify_payments",
                "status": "success",
                "message": "Transaction approved",
                "created_at": stamp,
                "test": False,
                "authorization": None,
                "location_id": None,
                "user_id": None,
                "parent_id": None,
                "processed_at": stamp,
                "device_id": None,
                "error_code": None,
                "source_name": "web",
                "receipt": {},
                "amount": _money(amount),
                "currency": CURRENCY,
                "payment_id": f"{order['name']}.2",
                "total_unsettled_set": {
                    "presentment_money": {"amount": "0.0", "currency": CURRENCY},
                    "shop_money": {"amount": "0.0", "currency": CURRENCY},
                },
                "manual_payment_gateway": False,
                "amount_rounding": None,
                "admin_graphql_api_id": f"gid://shopify/OrderTransaction/{transaction_id}",
            }
        ],
    }


def _refunded(order: dict[str, Any], refund: dict[str, Any], at: datetime) -> dict[str, Any]:
    refunded_line = refund["refund_line_items"][0]
    amount = Decimal(refunded_line["subtotal_set"]["shop_money"]["amount"])
    subtotal = Decimal(order["current_subtotal_price"]) - amount
    total = Decimal(order["current_total_price"]) - amount
    items = []
    for item in order["line_items"]:
        if item["id"] == refunded_line["line_item_id"]:
            left = item["current_quantity"] - refunded_line["quantity"]
            item = {**item, "current_quantity": left, "fulfillable_quantity": left}
        items.append(item)
    return {
        **order,
        "updated_at": _shop_time(at),
        "financial_status": "partially_refunded",
        "current_subtotal_price": _money(subtotal),
        "current_subtotal_price_set": _money_set(subtotal),
        "current_total_price": _money(total),
        "current_total_price_set": _money_set(total),
        "line_items": items,
        "refunds": [refund],
    }


def _customer_events(rng: random.Random, person: _Customer) -> list[_Event]:
    # Since 2025-01 consent no longer rides on the customer payload: it has its own topic.
    state = rng.choice(("subscribed", "subscribed", "subscribed", "not_subscribed", "unsubscribed"))
    consent_at = person.created_at + timedelta(seconds=1)
    consent = {
        "customer_id": person.id,
        "email_address": person.email,
        "email_marketing_consent": {
            "state": state,
            "opt_in_level": "single_opt_in",
            "consent_updated_at": None if state == "not_subscribed" else _shop_time(consent_at),
        },
    }
    return [
        _Event(person.created_at, "customers/create", _customer_payload(person, updated=None)),
        _Event(consent_at, "customers_email_marketing_consent/update", consent),
    ]


def _customer_update(person: _Customer, at: datetime) -> _Event:
    return _Event(at, "customers/update", _customer_payload(person, updated=at))


def _customer_payload(
    person: _Customer, updated: datetime | None, embedded: bool = False
) -> dict[str, Any]:
    address = _customer_address(person)
    payload: dict[str, Any] = {
        "id": person.id,
        "email": person.email,
        "created_at": _shop_time(person.created_at),
        "updated_at": _shop_time(updated or person.created_at),
        "first_name": person.first_name,
        "last_name": person.last_name,
        "state": "disabled",
        "note": None,
        "verified_email": True,
        "multipass_identifier": None,
        "tax_exempt": False,
        "currency": CURRENCY,
        "phone": None,
        "addresses": [address],
        "tax_exemptions": [],
        "admin_graphql_api_id": f"gid://shopify/Customer/{person.id}",
        "default_address": address,
    }
    if embedded:
        # The customer nested in an order or checkout carries no address list.
        del payload["addresses"]
    return payload


def _customer_address(person: _Customer) -> dict[str, Any]:
    where = person.location
    return {
        "id": ADDRESS_ID_BASE + person.id - CUSTOMER_ID_BASE,
        "customer_id": person.id,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "company": None,
        "address1": where.address1,
        "address2": None,
        "city": where.city,
        "province": where.province,
        "country": where.country,
        "zip": where.zip,
        "phone": None,
        "name": f"{person.first_name} {person.last_name}",
        "province_code": where.province_code,
        "country_code": where.country_code,
        "country_name": where.country,
        "default": True,
    }


def _order_address(person: _Customer) -> dict[str, Any]:
    where = person.location
    return {
        "first_name": person.first_name,
        "address1": where.address1,
        "phone": None,
        "city": where.city,
        "zip": where.zip,
        "province": where.province,
        "country": where.country,
        "last_name": person.last_name,
        "address2": None,
        "company": None,
        "latitude": None,
        "longitude": None,
        "name": f"{person.first_name} {person.last_name}",
        "country_code": where.country_code,
        "province_code": where.province_code,
    }


def _moved(rng: random.Random, current: _Location) -> _Location:
    return rng.choice([where for where in _LOCATIONS if where.city != current.city])


def _checkout_events(
    rng: random.Random, now: datetime, products: list[_Product], people: list[_Customer]
) -> list[_Event]:
    shopper = people[MIN_CUSTOMERS] if len(people) > MIN_CUSTOMERS else people[-1]
    events = []
    for number, (person, hours) in enumerate(((shopper, 6), (None, 3))):
        at = now - timedelta(hours=hours)
        events.append(_Event(at, "checkouts/create", _checkout(rng, at, person, products, number)))
    return events


def _checkout(
    rng: random.Random,
    at: datetime,
    person: _Customer | None,
    products: list[_Product],
    number: int,
) -> dict[str, Any]:
    checkout_id = CHECKOUT_ID_BASE + number
    token = f"{rng.getrandbits(128):032x}"
    lines = _random_lines(rng, products)
    subtotal = sum((line.variant.price * line.quantity for line in lines), ZERO)
    stamp = _shop_time(at)
    address = _order_address(person) if person else None
    return {
        "id": checkout_id,
        "token": token,
        "cart_token": f"{rng.getrandbits(128):032x}",
        "email": person.email if person else None,
        "gateway": None,
        "buyer_accepts_marketing": False,
        "created_at": stamp,
        "updated_at": stamp,
        "landing_site": "/",
        "note": None,
        "note_attributes": [],
        "referring_site": None,
        "shipping_lines": [],
        "taxes_included": False,
        "total_weight": sum(line.product.grams * line.quantity for line in lines),
        "currency": CURRENCY,
        "completed_at": None,
        "closed_at": None,
        "user_id": None,
        "location_id": None,
        "source_identifier": None,
        "source_url": None,
        "device_id": None,
        "phone": None,
        "customer_locale": "en",
        "line_items": [_checkout_line(rng, line) for line in lines],
        "name": f"#{checkout_id}",
        "source": None,
        "abandoned_checkout_url": (
            f"https://{SHOP_DOMAIN}/548380009/checkouts/{token}/recover?key={token[:16]}"
        ),
        "discount_codes": [],
        "tax_lines": [],
        "source_name": "web",
        "presentment_currency": CURRENCY,
        "buyer_accepts_sms_marketing": False,
        "sms_marketing_phone": None,
        "total_discounts": "0.00",
        "total_line_items_price": _money(subtotal),
        "total_price": _money(subtotal),
        "total_tax": "0.00",
        "subtotal_price": _money(subtotal),
        "total_duties": None,
        "reservation_token": None,
        "billing_address": address,
        "shipping_address": address,
        "customer": _customer_payload(person, updated=None, embedded=True) if person else None,
    }


def _checkout_line(rng: random.Random, line: _Line) -> dict[str, Any]:
    variant_title = None if line.variant.title == "Default Title" else line.variant.title
    return {
        "applied_discounts": [],
        "discount_allocations": [],
        "key": f"{rng.getrandbits(128):032x}",
        "fulfillment_service": "manual",
        "gift_card": False,
        "grams": line.product.grams,
        "presentment_title": line.product.title,
        "presentment_variant_title": variant_title,
        "product_id": line.product.id,
        "properties": None,
        "quantity": line.quantity,
        "requires_shipping": True,
        "sku": line.variant.sku,
        "tax_lines": [],
        "taxable": True,
        "title": line.product.title,
        "variant_id": line.variant.id,
        "variant_title": variant_title,
        "variant_price": _money(line.variant.price),
        "vendor": line.product.vendor,
        "user_id": None,
        "compare_at_price": None,
        "line_price": _money(line.variant.price * line.quantity),
        "price": _money(line.variant.price),
    }


def _product(product: _Product, listed_at: datetime) -> dict[str, Any]:
    created = _shop_time(listed_at)
    handle = product.title.lower().replace(" ", "-")
    sized = product.variants[0].title != "Default Title"
    return {
        "admin_graphql_api_id": f"gid://shopify/Product/{product.id}",
        "body_html": f"<p>{product.title} by {product.vendor}.</p>",
        "created_at": created,
        "handle": handle,
        "id": product.id,
        "product_type": product.product_type,
        "published_at": created,
        "template_suffix": None,
        "title": product.title,
        "updated_at": created,
        "vendor": product.vendor,
        "status": "active",
        "published_scope": "global",
        "tags": f"{product.product_type.lower()}, {product.vendor.lower()}",
        "variants": [_variant(product, variant, created) for variant in product.variants],
        "options": [
            {
                "name": "Size" if sized else "Title",
                "id": product.id + 1000,
                "product_id": product.id,
                "position": 1,
                "values": [variant.title for variant in product.variants],
            }
        ],
        "images": [],
        "image": None,
        "media": [],
        "variant_gids": [
            {
                "admin_graphql_api_id": f"gid://shopify/ProductVariant/{variant.id}",
                "updated_at": _utc_time(listed_at),
            }
            for variant in product.variants
        ],
        "has_variants_that_requires_components": False,
        "category": None,
    }


def _variant(product: _Product, variant: _Variant, created: str) -> dict[str, Any]:
    return {
        "admin_graphql_api_id": f"gid://shopify/ProductVariant/{variant.id}",
        "barcode": None,
        "compare_at_price": None,
        "created_at": created,
        "id": variant.id,
        "inventory_policy": "deny",
        "position": variant.position,
        "price": _money(variant.price),
        "product_id": product.id,
        "sku": variant.sku,
        "taxable": True,
        "title": variant.title,
        "updated_at": created,
        "option1": variant.title,
        "option2": None,
        "option3": None,
        "image_id": None,
        "inventory_item_id": INVENTORY_ITEM_ID_BASE + variant.id - VARIANT_ID_BASE,
        "inventory_quantity": 40,
        "old_inventory_quantity": 40,
    }


def _money(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def _money_set(amount: Decimal) -> dict[str, Any]:
    money = {"amount": _money(amount), "currency_code": CURRENCY}
    return {"shop_money": money, "presentment_money": dict(money)}


def _shop_time(moment: datetime) -> str:
    return moment.astimezone(SHOP_TZ).isoformat(timespec="seconds")


def _utc_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    if end <= start:
        return start
    seconds = rng.uniform(0, (end - start).total_seconds())
    return (start + timedelta(seconds=seconds)).replace(microsecond=0)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
