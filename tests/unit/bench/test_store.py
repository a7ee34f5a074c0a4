"""The synthetic store: the same seed gives the same webhooks; it has the promised shape."""

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bench import store
from bench.load import signed_request
from bench.report import markdown_entry, prepend_results
from services.common.signing import verify_webhook

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _deliveries(seed: int, count: int) -> list[store.Delivery]:
    return store.deliveries(seed, store.customers(seed, range(count), NOW))


def test_the_same_seed_gives_the_same_deliveries_byte_for_byte() -> None:
    first, again = _deliveries(7, 300), _deliveries(7, 300)
    assert [(d.topic, d.event_id, d.triggered_at, d.body) for d in first] == [
        (d.topic, d.event_id, d.triggered_at, d.body) for d in again
    ]
    other = _deliveries(8, 300)
    assert [d.body for d in other] != [d.body for d in first]


def test_a_customer_does_not_depend_on_which_others_are_generated() -> None:
    alone = next(store.customers(3, [150], NOW))
    among = list(store.customers(3, range(200), NOW))[150]
    assert alone == among


def test_order_counts_are_skewed_most_once_with_a_long_tail() -> None:
    people = list(store.customers(1, range(1500), NOW))
    counts = Counter(len(p.orders) for p in people)
    assert 0.55 < counts[1] / len(people) < 0.8
    assert max(counts) >= 20
    assert sum(n for c, n in counts.items() if c >= 10) >= 15
    assert all(o.placed_at < NOW for p in people for o in p.orders)


def test_deliveries_have_refunds_cancellations_updates_duplicates_and_reorderings() -> None:
    deliveries = _deliveries(2, 1200)
    topics = Counter(d.topic for d in deliveries if not d.duplicate)
    orders = topics["orders/create"]
    assert 0.03 < topics["refunds/create"] / orders < 0.09
    assert 0.01 < topics["orders/cancelled"] / orders < 0.05
    assert topics["orders/updated"] == topics["refunds/create"]
    assert 0.1 < topics["customers/update"] / topics["customers/create"] < 0.2

    seen: dict[str, bytes] = {}
    duplicates = 0
    for d in deliveries:
        if d.duplicate:
            assert seen[d.event_id] == d.body  # a redelivery: same id, same body
            duplicates += 1
        else:
            assert d.event_id not in seen
            seen[d.event_id] = d.body
    assert 0.005 < duplicates / len(deliveries) < 0.02

    last: dict[int, datetime] = {}
    overtaking = 0
    for d in deliveries:
        if d.customer_id is None or d.duplicate:
            continue
        if d.customer_id in last and d.triggered_at < last[d.customer_id]:
            overtaking += 1
        last[d.customer_id] = max(d.triggered_at, last.get(d.customer_id, d.triggered_at))
    flagged = sum(d.out_of_order for d in deliveries)
    assert 0.01 < flagged / len(deliveries) < 0.04
    # Chained swaps and same-second events make the two counts differ slightly.
    assert abs(overtaking - flagged) <= flagged * 0.1


def test_bodies_are_shopify_rest_shapes_and_the_bulk_export_has_the_same_orders() -> None:
    people = list(store.customers(4, range(200), NOW))
    for d in store.deliveries(4, people):
        body = json.loads(d.body)
        if d.topic.startswith("orders/"):
            assert body["customer"]["id"] == d.customer_id
            assert body["line_items"] and body["total_price"]
    lines = [json.loads(line) for line in store.bulk_lines(people, with_products=True)]
    orders = [x for x in lines if x["id"].startswith("gid://shopify/Order/")]
    assert len(orders) == sum(len(p.orders) for p in people)
    assert sum(x["id"].startswith("gid://shopify/Product/") for x in lines) == store.PRODUCTS


def test_a_signed_request_carries_the_body_and_its_signature() -> None:
    delivery = _deliveries(5, 5)[0]
    raw = signed_request(delivery, "127.0.0.1:8000", "demo.myshopify.com", "secret")
    head, body = raw.split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    assert body == delivery.body
    assert int(headers["Content-Length"]) == len(body)
    assert verify_webhook(body, "secret", headers["X-Shopify-Hmac-Sha256"])
    assert headers["X-Shopify-Event-Id"] == delivery.event_id


def test_results_md_gets_the_new_entry_first_under_the_header(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nIntro.\n\n## 2026-01-01: old\n\nold figures\n")
    results = {
        "date": "2026-12-02T00:00:00+00:00",
        "commit": "abc1234",
        "command": "python -m bench --quick",
        "quick": True,
        "seconds": 100.0,
        "machine": {"cores": 2, "model": "CPU", "ram_gb": 24.0},
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [2.0, 2.0, 2.0],
        "e2e_events_per_s": 1000.0,
        "cost_curve": [{"customers": 10, "orders": 20, "seed_seconds": 1.0, "events_per_s": 5.0}],
        "rss_mb": {"broker": 20.0},
    }
    prepend_results(path, markdown_entry(results, "make bench QUICK=1"))
    text = path.read_text()
    assert text.startswith("# Benchmark results\n\nIntro.\n\n## 2026-12-02: make bench QUICK=1")
    assert text.index("## 2026-12-02") < text.index("## 2026-01-01: old")
    assert "| end to end, sustained | 1,000.0 | events/s |" in text
