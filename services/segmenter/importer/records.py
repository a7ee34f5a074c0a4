"""What the parsers yield (a REST-shaped payload per object, or a rejected line) and its Event.

Parsed objects become the same reducer `Event`s live webhooks become, with an event id derived
from the object's version, so importing a file twice applies it once.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from services.common.jsontext import encode_json
from services.common.shopify import Customer, Order, Product, parse_payload
from services.common.validation import first_validation_error
from services.segmenter.domain.reducer import Event
from services.segmenter.domain.state import UNKNOWN_TIME

# The topics an import produces: the webhook topics that carry the same body.
CUSTOMER_TOPIC = "customers/update"
ORDER_TOPIC = "orders/create"
CANCELLED_ORDER_TOPIC = "orders/cancelled"
PRODUCT_TOPIC = "products/update"


@dataclass(frozen=True)
class ImportRecord:
    """One object read from a file: its webhook topic, REST-shaped payload and first line."""

    topic: str
    payload: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Rejection:
    """A line (or CSV row) that was not imported, and why."""

    line: int
    reason: str


def content_hash(payload: dict[str, Any]) -> str:
    """A short, stable digest of a payload (keys sorted), for objects without a version time."""
    canonical = encode_json(_sorted(payload))
    return hashlib.sha256(canonical).hexdigest()[:24]


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def event_for(record: ImportRecord, now: datetime, exported_at: datetime | None = None) -> Event:
    """The reducer event of a record; raises ValueError (with a reason) if the payload is invalid.

    The event id names the object's version (`updated_at`, else a digest of its content), so a
    second import of the same export is recognised as a duplicate by the pipeline. Shopify's
    totals in the record are true as of `exported_at` (default: `now`), whatever the
    object's `updated_at` says.
    """
    try:
        model = parse_payload(record.topic, record.payload)
    except ValidationError as exc:
        raise ValueError(first_validation_error(exc)) from exc
    if not isinstance(model, Customer | Order | Product):
        raise ValueError(f"topic {record.topic} cannot be imported")
    customer_id: int | None = None
    if isinstance(model, Customer):
        customer_id = model.id
    elif isinstance(model, Order) and model.customer is not None:
        customer_id = model.customer.id
    version = model.updated_at.isoformat() if model.updated_at else content_hash(record.payload)
    occurred_at = model.updated_at or model.created_at or now
    if isinstance(model, Customer) and model.updated_at is None:
        # A customer row without a time (the admin CSV export) never overrides a value that
        # has one: live updates after the export win, consent included.
        occurred_at = UNKNOWN_TIME
    return Event(
        topic=record.topic,
        event_id=f"import:{record.topic}:{model.id}:{version}",
        occurred_at=occurred_at,
        received_at=now,
        customer_id=customer_id,
        payload=model,
        as_of=exported_at or now,
    )
