"""Kafka record → reducer Event, or the reason it cannot be understood (for the dead letters)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import ValidationError

from services.common.envelope import Envelope, PayloadError, decode_envelope
from services.common.shopify import ShopifyModel, parse_payload
from services.common.validation import first_validation_error
from services.segmenter.domain.reducer import Event

# Every reason an event is dead-lettered for (the label values of the dead-letter counter,
# which exports each at 0 from the start).
DeadLetterReason = Literal[
    "empty_record", "invalid_envelope", "invalid_payload", "processing_error", "unknown_shop"
]
DEAD_LETTER_REASONS: tuple[str, ...] = get_args(DeadLetterReason)


@dataclass(frozen=True)
class Undecodable:
    """Why an event went to the dead-letter topic; `reason` is a short stable code."""

    reason: DeadLetterReason
    detail: str
    # Whose event it is, when the envelope could be read: an erased customer's or shop's is
    # dropped rather than dead-lettered with its data.
    shop: str | None = None
    customer_id: int | None = None


def decode_event(raw: bytes | None) -> tuple[Envelope, Event] | Undecodable:
    """Decode one record's value; unknown topics decode fine (with no payload model).

    Any bytes at all: whatever fails to decode is Undecodable, never an exception (a record
    that raised here would stop its partition for good).
    """
    try:
        return _decode(raw)
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        return Undecodable("invalid_envelope", f"{type(exc).__name__}: {exc}"[:500])


def _decode(raw: bytes | None) -> tuple[Envelope, Event] | Undecodable:
    if raw is None:
        return Undecodable("empty_record", "the record has no value")
    try:
        envelope = decode_envelope(raw)
    except PayloadError as exc:
        return Undecodable("invalid_envelope", str(exc))
    except ValidationError as exc:
        return Undecodable("invalid_envelope", first_validation_error(exc))
    payload: ShopifyModel | Mapping[str, Any] | None
    if envelope.source == "shopify":
        try:
            payload = parse_payload(envelope.topic, envelope.payload)
        except ValidationError as exc:
            return Undecodable(
                "invalid_payload",
                f"{envelope.topic}: {first_validation_error(exc)}",
                envelope.shop,
                _customer_id(envelope.customer_id),
            )
    else:
        payload = envelope.payload
    customer_id = None
    if envelope.customer_id is not None:
        try:
            customer_id = int(envelope.customer_id)
        except ValueError:
            return Undecodable("invalid_envelope", f"customer_id {envelope.customer_id!r}")
    event = Event(
        topic=envelope.topic,
        event_id=envelope.event_id,
        occurred_at=envelope.occurred_at,
        received_at=envelope.received_at,
        customer_id=customer_id,
        payload=payload,
    )
    return envelope, event


def _customer_id(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
