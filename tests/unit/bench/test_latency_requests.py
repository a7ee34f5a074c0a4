"""The latency benchmark's requests: each a signed first order of 1500 for a new customer."""

import json

from bench.latency import build_requests
from services.common.signing import verify_webhook


def test_each_request_is_a_signed_vip_order_for_a_customer_of_its_own() -> None:
    requests, event_ids = build_requests(5, "demo.myshopify.com", "s3cret", "http://h:81", 3)
    assert len(requests) == len(event_ids) == 5
    customers = set()
    for raw in requests:
        head, body = raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert lines[0] == "POST /webhooks/shopify HTTP/1.1"
        assert int(headers["Content-Length"]) == len(body)
        assert verify_webhook(body, "s3cret", headers["X-Shopify-Hmac-Sha256"])
        assert headers["X-Shopify-Event-Id"] in event_ids
        order = json.loads(body)
        assert order["total_price"] == "1500.00"
        customers.add(order["customer"]["id"])
    assert len(customers) == 5
    # The same seed builds the same requests.
    assert build_requests(5, "demo.myshopify.com", "s3cret", "http://h:81", 3)[0] == requests
