"""Receipt → change latency: signed orders at a fixed rate, the `vip` entries they cause timed.

Run against a live `segflow dev` (or `make run`):
    .venv/bin/python -m bench.latency --rate 500 --seconds 20 --webhook-secret SECRET \
        [--ingest-url http://127.0.0.1:8000] [--shop demo.myshopify.com] \
        [--bootstrap-servers 127.0.0.1:9092]

Every order is a new customer's first order of 1500, so each causes exactly one `vip` entry.
Latency is that entry's Kafka timestamp (the segmenter's producer stamps it at send) minus
the `received_at` ingest wrote, and also its consume time here minus `received_at`.
"""

import argparse
import asyncio
import copy
import json
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.signing import sign_webhook
from services.demo.stream import demo_stream

CHANGES_TOPIC = "segflow.segment-changes"
VIP = "vip"
# Each connection has at most one request in flight (keep-alive, no pipelining).
CONNECTIONS = 16


@dataclass(frozen=True)
class LatencyReport:
    """Figures of one run, latencies in milliseconds (None when nothing was matched)."""

    rate: float
    seconds: float
    sent: int
    accepted: int
    matched: int
    missing: int
    achieved_rate: float
    publish_p50_ms: float | None
    publish_p90_ms: float | None
    publish_p99_ms: float | None
    consume_p50_ms: float | None
    consume_p90_ms: float | None
    consume_p99_ms: float | None
    broker_rss_mb_before: float | None
    broker_rss_mb_after: float | None
    # Broker RSS growth over the run divided by the orders sent.
    broker_bytes_per_event: float | None
    # Mean ms per observation of each consumer-loop stage over the run (with --metrics-url).
    stage_mean_ms: dict[str, float] | None = None

    def summary(self) -> str:
        """One line for a terminal."""
        return (
            f"rate {self.achieved_rate:.0f}/s, {self.matched}/{self.sent} matched; "
            f"publish p50/p90/p99 {self.publish_p50_ms}/{self.publish_p90_ms}/"
            f"{self.publish_p99_ms} ms; consume p50/p90/p99 {self.consume_p50_ms}/"
            f"{self.consume_p90_ms}/{self.consume_p99_ms} ms; broker RSS "
            f"{self.broker_rss_mb_before} → {self.broker_rss_mb_after} MB "
            f"({self.broker_bytes_per_event} B/event)"
            + (f"; stage means (ms) {self.stage_mean_ms}" if self.stage_mean_ms else "")
        )


def _order_template() -> dict[str, Any]:
    """A realistic orders/create payload from the demo stream (about 8 KB of JSON)."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    for webhook in demo_stream(seed=7, now=now):
        if webhook.topic == "orders/create":
            order: dict[str, Any] = json.loads(webhook.body)
            if order.get("customer"):
                return order
    raise RuntimeError("the demo stream has no orders/create with a customer")


def build_requests(
    count: int, shop: str, secret: str, ingest_url: str, seed: int
) -> tuple[list[bytes], set[str]]:
    """`count` complete HTTP/1.1 requests (signed, keep-alive) and their event ids."""
    template = _order_template()
    rng = random.Random(seed)
    # New customers each run, so every order is a first one and enters `vip`.
    base = rng.getrandbits(40) << 12
    host = urlsplit(ingest_url).netloc
    requests: list[bytes] = []
    event_ids: set[str] = set()
    for n in range(count):
        order = copy.deepcopy(template)
        order["id"] = base + n
        order["admin_graphql_api_id"] = f"gid://shopify/Order/{base + n}"
        order["customer"]["id"] = base + n
        order["email"] = order["customer"]["email"] = f"lat{base + n}@example.com"
        for field in ("total_price", "current_total_price"):
            order[field] = "1500.00"
        for field in ("total_price_set", "current_total_price_set"):
            if isinstance(order.get(field), dict):
                for money in order[field].values():
                    money["amount"] = "1500.00"
        body = json.dumps(order, separators=(",", ":")).encode()
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        event_ids.add(event_id)
        head = (
            f"POST /webhooks/shopify HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\nX-Shopify-Topic: orders/create\r\n"
            f"X-Shopify-Shop-Domain: {shop}\r\n"
            f"X-Shopify-Hmac-Sha256: {sign_webhook(body, secret)}\r\n"
            f"X-Shopify-Webhook-Id: {uuid.UUID(int=rng.getrandbits(128), version=4)}\r\n"
            f"X-Shopify-Event-Id: {event_id}\r\nX-Shopify-API-Version: 2025-07\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests, event_ids


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length body; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _post_at_rate(url: str, requests: list[bytes], rate: float) -> tuple[int, float]:
    """Send request i at start + i/rate (open loop over CONNECTIONS connections)."""
    parts = urlsplit(url)
    accepted = 0
    start = time.monotonic() + 0.2

    async def connection(index: int) -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            for n in range(index, len(requests), CONNECTIONS):
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(requests[n])
                if await _read_response(reader) == 200:
                    accepted += 1
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(connection(i) for i in range(CONNECTIONS)))
    return accepted, time.monotonic() - start


def broker_pid(bootstrap_servers: str) -> int | None:
    """The pid listening on the first bootstrap server's port, if it is on this machine."""
    port = int(bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            pid: int | None = conn.pid
            return pid
    return None


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        rss: int = psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None
    return round(rss / 2**20, 1)


STAGE_METRIC = "segflow_segmenter_stage_seconds"


async def _stage_totals(metrics_url: str | None) -> dict[str, tuple[float, float]] | None:
    """(sum, count) of each stage from the segmenter's /metrics."""
    if metrics_url is None:
        return None
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(metrics_url)).text
    totals: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, slot in (("_sum", 0), ("_count", 1)):
            prefix = f'{STAGE_METRIC}{suffix}{{stage="'
            if line.startswith(prefix):
                name, _, value = line[len(prefix) :].partition('"} ')
                totals.setdefault(name, [0.0, 0.0])[slot] = float(value)
    return {name: (pair[0], pair[1]) for name, pair in totals.items()}


def _stage_means(
    before: dict[str, tuple[float, float]] | None, after: dict[str, tuple[float, float]] | None
) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    means = {}
    for name, (total, count) in after.items():
        old_total, old_count = before.get(name, (0.0, 0.0))
        if count > old_count:
            means[name] = round((total - old_total) / (count - old_count) * 1000, 2)
    return means


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[index] * 1000, 1)


async def measure_latency(
    *,
    ingest_url: str,
    shop: str,
    webhook_secret: str,
    bootstrap_servers: str,
    rate: float = 500,
    seconds: float = 20,
    seed: int | None = None,
    settle_seconds: float = 15,
    metrics_url: str | None = None,
) -> LatencyReport:
    """Post `rate * seconds` orders at a fixed rate and time the `vip` entries they cause."""
    count = int(rate * seconds)
    requests, event_ids = build_requests(
        count, shop, webhook_secret, ingest_url, seed if seed is not None else time.time_ns()
    )
    pid = broker_pid(bootstrap_servers)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await consumer.start()
    publish: list[float] = []
    consume: list[float] = []
    try:
        partitions = consumer.partitions_for_topic(CHANGES_TOPIC) or set()
        consumer.assign([TopicPartition(CHANGES_TOPIC, p) for p in partitions])
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)
        rss_before = _rss_mb(pid)
        stages_before = await _stage_totals(metrics_url)
        found: set[str] = set()

        async def read_changes() -> None:
            while len(found) < len(event_ids):
                batch = await consumer.getmany(timeout_ms=100)
                now = datetime.now(UTC)
                for records in batch.values():
                    for record in records:
                        change = json.loads(record.value)
                        cause = change.get("cause_event_id")
                        if change["segment"]["handle"] != VIP or change["change"] != "entered":
                            continue
                        if cause not in event_ids or cause in found:
                            continue
                        found.add(cause)
                        received = datetime.fromisoformat(change["received_at"])
                        published = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                        publish.append((published - received).total_seconds())
                        consume.append((now - received).total_seconds())

        reading = asyncio.create_task(read_changes())
        accepted, elapsed = await _post_at_rate(ingest_url, requests, rate)
        try:
            await asyncio.wait_for(asyncio.shield(reading), settle_seconds)
        except TimeoutError:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        rss_after = _rss_mb(pid)
        stages_after = await _stage_totals(metrics_url)
    finally:
        await consumer.stop()
    publish.sort()
    consume.sort()
    growth = None
    if rss_before is not None and rss_after is not None:
        growth = round((rss_after - rss_before) * 2**20 / count, 1)
    return LatencyReport(
        rate=rate,
        seconds=seconds,
        sent=count,
        accepted=accepted,
        matched=len(publish),
        missing=count - len(publish),
        achieved_rate=round(count / elapsed, 1),
        publish_p50_ms=_percentile(publish, 0.50),
        publish_p90_ms=_percentile(publish, 0.90),
        publish_p99_ms=_percentile(publish, 0.99),
        consume_p50_ms=_percentile(consume, 0.50),
        consume_p90_ms=_percentile(consume, 0.90),
        consume_p99_ms=_percentile(consume, 0.99),
        broker_rss_mb_before=rss_before,
        broker_rss_mb_after=rss_after,
        broker_bytes_per_event=growth,
        stage_mean_ms=_stage_means(stages_before, stages_after),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest-url", default="http://127.0.0.1:8000")
    parser.add_argument("--shop", default="demo.myshopify.com")
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--metrics-url", default=None, help="the segmenter's /metrics, for the stage breakdown"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    report = asyncio.run(
        measure_latency(
            ingest_url=args.ingest_url,
            shop=args.shop,
            webhook_secret=args.webhook_secret,
            bootstrap_servers=args.bootstrap_servers,
            rate=args.rate,
            seconds=args.seconds,
            seed=args.seed,
            metrics_url=args.metrics_url,
        )
    )
    sys.stdout.write((json.dumps(asdict(report)) if args.json else report.summary()) + "\n")


if __name__ == "__main__":
    main()
