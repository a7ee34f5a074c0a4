"""Review finding: the webhook fast path accepts a body the segmenter can never decode.

`payload_customer_id` returns orjson's answer whenever it names a customer, so the exact
parser (stdlib json, the one `parse_payload_object` and the segmenter's `decode_envelope` use)
never sees the body. orjson reads nesting up to 1024 levels; stdlib json raises RecursionError
well before that. Such a delivery, signed by the shop, is answered 200 "accepted", goes to
segflow.events, and the segmenter dead-letters it as invalid_envelope: accepted, then lost.
Before issue 12 the route parsed the body with the exact parser first (no 200 for it).
"""

from datetime import UTC, datetime

from services.common.envelope import EnvelopeMeta, PayloadError, encode_envelope
from services.ingest.payload import payload_customer_id
from services.segmenter.domain.event_decoding import Undecodable, decode_event

DEPTH = 1000
BODY = (
    b'{"id": 820982911946154508, "customer": {"id": 115310627314723954}, "note_attributes": '
    + b"[" * DEPTH
    + b"]" * DEPTH
    + b"}"
)


def test_a_webhook_body_ingest_accepts_is_one_the_segmenter_decodes() -> None:
    try:
        customer_id = payload_customer_id("orders/create", BODY)
    except PayloadError:
        return  # refused at the door (400 invalid_json): nothing accepted, nothing lost
    now = datetime.now(UTC)
    meta = EnvelopeMeta(
        event_id="deep-1",
        shop="test-shop.myshopify.com",
        topic="orders/create",
        source="shopify",
        customer_id=str(customer_id) if customer_id is not None else None,
        occurred_at=now,
        received_at=now,
    )
    decoded = decode_event(encode_envelope(meta, BODY))
    assert not isinstance(decoded, Undecodable), (
        f"ingest accepted the body (customer {customer_id}) but the segmenter dead-letters "
        f"it: {decoded}"
    )
