"""The fast customer-id reading agrees with the exact parser on every body, odd ones included."""

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.envelope import PayloadError, parse_payload_object
from services.common.shopify import customer_id_of
from services.ingest.payload import payload_customer_id

TOPICS = ["orders/create", "customers/update", "checkouts/create", "products/update", "x/y"]


def exact(topic: str, raw: bytes) -> int | None | type[PayloadError]:
    try:
        return customer_id_of(topic, parse_payload_object(raw))
    except PayloadError:
        return PayloadError


def fast(topic: str, raw: bytes) -> int | None | type[PayloadError]:
    try:
        return payload_customer_id(topic, raw)
    except PayloadError:
        return PayloadError


ODD_IDS = [
    "1.0",
    "1.5E1",
    "1e2",
    "-0",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775807",
    "9223372036854775808",
    "123456789012345678901234567890",
    '"gid://shopify/Customer/42"',
    '"42"',
    '"\\ud800"',
    "true",
    "null",
    "1e400",
]


@pytest.mark.parametrize("topic", TOPICS)
@pytest.mark.parametrize("value", ODD_IDS)
def test_odd_ids_read_as_the_exact_parser_reads_them(topic: str, value: str) -> None:
    for raw in (
        f'{{"id": 1, "customer": {{"id": {value}}}}}'.encode(),
        f'{{"id": {value}, "customer_id": {value}}}'.encode(),
    ):
        assert fast(topic, raw) == exact(topic, raw), raw


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[1]",
        b'"x"',
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'\xef\xbb\xbf{"a": 1}',
        b'{"a": "\xff"}',
        b'{"a": "\xed\xa0\x80"}',
        b'{"a": "\\ud800", "customer": {"id": 3}}',
        b'{"a": 01}',
        b'{"a": 1} x',
        b'{"a": "\x01"}',
        b'{"customer": {"id": 1}, "customer": {"id": 2}}',
        b' \n{"customer": {"id": 2}}\r\n',
    ],
)
def test_odd_bodies_are_judged_as_the_exact_parser_judges_them(raw: bytes) -> None:
    for topic in TOPICS:
        assert fast(topic, raw) == exact(topic, raw)


def test_errors_carry_the_exact_parsers_message() -> None:
    with pytest.raises(PayloadError) as fast_error:
        payload_customer_id("orders/create", b'{"id": 1,}')
    with pytest.raises(PayloadError) as exact_error:
        parse_payload_object(b'{"id": 1,}')
    assert str(fast_error.value) == str(exact_error.value)


KEYS = st.sampled_from(["id", "customer", "customer_id", "x"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)


def _dumps(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)  # a finite Decimal's text is a JSON number (1E+2, -0.00, 5E-7)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(TOPICS), json_values)
def test_random_bodies_agree(topic: str, value: Any) -> None:
    raw = _dumps(value).encode()
    assert fast(topic, raw) == exact(topic, raw)
