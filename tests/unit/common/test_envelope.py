from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.common.envelope import (
    EnvelopeMeta,
    PayloadError,
    decode_envelope,
    encode_envelope,
    parse_payload_object,
    partition_key,
)

BIG_ID = 820982911946154508  # above 2**53: a float would change it


def meta(**overrides: object) -> EnvelopeMeta:
    fields: dict[str, object] = {
        "event_id": "ev-1",
        "shop": "a.myshopify.com",
        "topic": "orders/create",
        "source": "shopify",
        "customer_id": str(BIG_ID),
        "occurred_at": datetime(2025, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=-5))),
        "received_at": datetime(2025, 3, 1, 15, 0, 1, tzinfo=UTC),
    }
    fields.update(overrides)
    return EnvelopeMeta.model_validate(fields)


def test_round_trip_keeps_ids_and_money_exact() -> None:
    raw = b'{"id": %d, "refund": {"subtotal": 10.95}, "total_price": "1500.00"}' % BIG_ID
    envelope = decode_envelope(encode_envelope(meta(), raw))
    assert envelope.payload["id"] == BIG_ID
    assert envelope.payload["refund"]["subtotal"] == Decimal("10.95")
    assert isinstance(envelope.payload["refund"]["subtotal"], Decimal)
    assert envelope.payload["total_price"] == "1500.00"
    assert envelope.customer_id == str(BIG_ID)


def test_times_are_normalised_to_utc() -> None:
    envelope = decode_envelope(encode_envelope(meta(), b"{}"))
    assert envelope.occurred_at == datetime(2025, 3, 1, 15, 0, tzinfo=UTC)
    assert envelope.occurred_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError):
        meta(occurred_at=datetime(2025, 3, 1, 10, 0))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": 1', "not JSON"),
        (b'{"a": "\xff"}', "not UTF-8"),
    ],
)
def test_bad_bodies_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        parse_payload_object(raw)


def test_partition_key_groups_a_customers_events() -> None:
    assert partition_key("a.myshopify.com", "7") == b"a.myshopify.com/7"
    assert partition_key("a.myshopify.com", None) == b"a.myshopify.com"


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"customer_id": None, "webhook_id": "w-1", "api_version": "2025-07"},
        {"event_id": 'é\u2028\x00"\\😀', "occurred_at": datetime(2025, 3, 1, tzinfo=UTC)},
        {"received_at": datetime(2025, 3, 1, 15, 0, 1, 5, tzinfo=timezone(timedelta(0)))},
        {"occurred_at": datetime(2025, 3, 1, 10, 0, 0, 999999, tzinfo=timezone.min)},
    ],
)
def test_envelope_head_is_the_models_own_json(overrides: dict[str, object]) -> None:
    one = meta(**overrides)
    head = encode_envelope(one, b"{}")[: -len(b',"payload":{}}')] + b"}"
    assert head == one.model_dump_json().encode()
