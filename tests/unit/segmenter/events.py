"""Building reducer events from Shopify-shaped payloads, for the segmenter's tests."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.common.jsontext import encode_json
from services.common.shopify import loads_payload, parse_payload
from services.segmenter.domain.reducer import Event

SHOP = 1
CUSTOMER = 115310627314723954
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def at(days_ago: float) -> datetime:
    return NOW - timedelta(days=days_ago)


def shopify_event(
    topic: str, payload: dict[str, Any], *, event_id: str | None = None, when: datetime = NOW
) -> Event:
    """An Event as the segmenter decodes it: the payload goes through JSON like on the wire."""
    decoded = loads_payload(encode_json(payload))
    customer = decoded.get("customer") if isinstance(decoded, dict) else None
    customer_id = customer.get("id") if isinstance(customer, dict) else decoded.get("id")
    if topic.startswith(("refunds/", "products/")):
        customer_id = None
    return Event(
        topic=topic,
        event_id=event_id or f"{topic}:{payload.get('id')}:{when.isoformat()}",
        occurred_at=when,
        received_at=when,
        customer_id=customer_id,
        payload=parse_payload(topic, decoded),
    )


def custom_event(kind: str, *, when: datetime = NOW, **properties: Any) -> Event:
    return Event(
        topic=f"custom/{kind}",
        event_id=f"{kind}:{when.isoformat()}:{sorted(properties.items())}",
        occurred_at=when,
        received_at=when,
        customer_id=CUSTOMER,
        payload={"type": kind, "customer_id": str(CUSTOMER), "properties": properties},
    )


def order(
    order_id: int,
    total: str,
    *,
    placed: datetime,
    updated: datetime | None = None,
    customer: int | None = CUSTOMER,
    lines: list[tuple[int | None, str | None]] | None = None,
    cancelled: datetime | None = None,
    refunds: list[dict[str, Any]] | None = None,
    checkout_token: str | None = None,
) -> dict[str, Any]:
    """An orders/* payload with the fields Shopify sends (2025-07 shape)."""
    stamp = (updated or placed).isoformat()
    return {
        "id": order_id,
        "email": "jon@example.com" if customer else "",
        "created_at": placed.isoformat(),
        "updated_at": stamp,
        "processed_at": placed.isoformat(),
        "cancelled_at": cancelled.isoformat() if cancelled else None,
        "currency": "USD",
        "total_price": total,
        "current_total_price": "0.00" if cancelled else total,
        "total_price_set": {
            "shop_money": {"amount": total, "currency_code": "USD"},
            "presentment_money": {"amount": total, "currency_code": "USD"},
        },
        "checkout_token": checkout_token,
        "test": False,
        "customer": (
            {"id": customer, "email": "jon@example.com", "created_at": None, "updated_at": None}
            if customer
            else None
        ),
        "line_items": [
            {"id": n, "product_id": pid, "vendor": vendor, "quantity": 1, "price": "1.00"}
            for n, (pid, vendor) in enumerate(lines or [(632910392, "Acme")])
        ],
        "refunds": refunds or [],
    }


def refund(refund_id: int, order_id: int, subtotal: str, *, when: datetime) -> dict[str, Any]:
    """A refunds/create payload: line subtotal as a JSON number, like Shopify sends it."""
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": when.isoformat(),
        "processed_at": when.isoformat(),
        "refund_line_items": [
            {
                "line_item_id": 1,
                "quantity": 1,
                "subtotal": Decimal(subtotal),
                "total_tax": Decimal(0),
                "subtotal_set": {"shop_money": {"amount": subtotal, "currency_code": "USD"}},
                "total_tax_set": {"shop_money": {"amount": "0.00", "currency_code": "USD"}},
            }
        ],
        "transactions": [],
        "order_adjustments": [],
    }
