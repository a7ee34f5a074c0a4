"""Real `segflow segmenter` processes for the failure-mode tests: start, probe over HTTP, stop.

Also the small pieces those tests share: order events, producing them one by one (so the
broker hands back each record's offset), committed offsets and polling with a deadline.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from services.common.envelope import EnvelopeMeta, encode_envelope, partition_key
from services.common.kafka import make_producer
from services.common.settings import Settings
from tests.helpers import free_port

SEGFLOW = str(Path(sys.executable).with_name("segflow"))
T = TypeVar("T")
VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}


def segmenter_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of a `segflow segmenter` for this test's database, topics and group,
    with a health port of its own (so several members can run side by side).

    Small batches, so a stream is several batches; short retry delays, so recovery is quick.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGFLOW_")}
    env.update(
        DATABASE_URL=settings.database_url or "",
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers or "",
        SEGFLOW_SEGMENTER_HEALTH_PORT=str(free_port()),
        SEGFLOW_TOPIC_EVENTS=settings.topic_events,
        SEGFLOW_TOPIC_SEGMENT_CHANGES=settings.topic_segment_changes,
        SEGFLOW_TOPIC_DEAD_LETTER=settings.topic_dead_letter,
        SEGFLOW_SEGMENTER_GROUP=settings.segmenter_group,
        SEGFLOW_CONSUMER_SESSION_TIMEOUT_MS="2000",
        SEGFLOW_SEGMENTER_BATCH_SIZE="4",
        SEGFLOW_SCHEDULER_INTERVAL_SECONDS="0.2",
        SEGFLOW_RETRY_INITIAL_SECONDS="0.05",
        SEGFLOW_RETRY_MAX_SECONDS="0.5",
    )
    env.update(overrides)
    return env


class SegmenterProcess:
    """One `segflow segmenter` process; its stderr goes to `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{env['SEGFLOW_SEGMENTER_HEALTH_PORT']}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> "SegmenterProcess":
        """Start it (again, after it exited: a restart keeps the same environment and log)."""
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [SEGFLOW, "segmenter"], env=self.env, stdout=log, stderr=log
            )
        return self

    @property
    def process(self) -> "subprocess.Popen[bytes]":
        if self._process is None:
            raise RuntimeError("not started")
        return self._process

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    async def readyz(self) -> tuple[int, dict[str, Any]] | None:
        """The status and body of /readyz, or None while nothing answers."""
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
                response = await client.get("/readyz")
        except httpx.TransportError:
            return None
        return response.status_code, response.json()

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
            text = (await client.get("/metrics")).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    total += sample.value
        return total

    async def metric_at_least(self, name: str, minimum: float, **labels: str) -> float | None:
        """The metric's value once it reaches `minimum`, else None (for `poll`)."""
        value = await self.metric(name, **labels)
        return value if value >= minimum else None

    async def ready(self) -> bool:
        """True when /readyz answers 200."""
        answer = await self.readyz()
        return answer is not None and answer[0] == 200

    async def wait_ready(self, timeout: float = 30) -> dict[str, Any]:
        """Wait for /readyz to answer 200 (consumer running, partitions assigned)."""

        async def ready() -> dict[str, Any] | None:
            self.assert_alive()
            answer = await self.readyz()
            return answer[1] if answer is not None and answer[0] == 200 else None

        return await poll(ready, timeout, "the segmenter to be ready")

    async def wait_reported(
        self, timeout: float, component: str = "consumer", **expected: object
    ) -> dict[str, Any]:
        """Wait for /readyz to answer 503 with a report of `component` (consumer, publisher)
        that includes `expected` (e.g. dependency="database", sqlstate="57014"); return it."""

        async def reported() -> dict[str, Any] | None:
            self.assert_alive()
            answer = await self.readyz()
            if answer is None or answer[0] != 503:
                return None
            consumer = answer[1].get(component)
            if not isinstance(consumer, dict) or not expected.items() <= consumer.items():
                return None
            return consumer

        return await poll(reported, timeout, f"/readyz to report {expected}")

    async def wait_exit(self, timeout: float = 60) -> int:
        """Wait for it to exit by itself (a crash hook, a failure); return the exit code."""
        return await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout)

    def assert_alive(self) -> None:
        if not self.alive():
            raise AssertionError(
                f"segmenter exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    async def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; SIGKILL if it does not exit in `timeout` s. Return the exit code."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                return await asyncio.to_thread(self._process.wait, timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
        return await asyncio.to_thread(self._process.wait)

    async def kill(self) -> int:
        """SIGKILL, as a crash would; return the exit code."""
        self.process.send_signal(signal.SIGKILL)
        return await asyncio.to_thread(self.process.wait)


async def poll(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, every: float = 0.05
) -> T:
    """Call `check` until it returns something other than None/False; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


def order_event(
    shop: str, order_id: int, customer: int, amount: str, *, event_id: str | None = None
) -> tuple[bytes, bytes]:
    """(key, value) of an orders/create event as ingest writes it."""
    placed = datetime.now(UTC) - timedelta(hours=1)
    payload = {
        "id": order_id,
        "created_at": placed.isoformat(),
        "updated_at": placed.isoformat(),
        "total_price": amount,
        "customer": {"id": customer},
        "line_items": [],
    }
    meta = EnvelopeMeta(
        event_id=event_id or f"order-{order_id}",
        shop=shop,
        topic="orders/create",
        source="shopify",
        customer_id=str(customer),
        occurred_at=placed,
        received_at=datetime.now(UTC),
    )
    return partition_key(shop, str(customer)), encode_envelope(meta, json.dumps(payload).encode())


def shopify_record(
    shop: str,
    topic: str,
    payload: dict[str, Any],
    event_id: str,
    customer: int | None,
    received_at: datetime | None = None,
) -> tuple[bytes, bytes]:
    """(key, value) of any Shopify webhook as ingest writes it (received now, or then)."""
    at = received_at or datetime.now(UTC)
    customer_id = str(customer) if customer is not None else None
    meta = EnvelopeMeta(
        event_id=event_id,
        shop=shop,
        topic=topic,
        source="shopify",
        customer_id=customer_id,
        occurred_at=at,
        received_at=at,
    )
    return partition_key(shop, customer_id), encode_envelope(meta, json.dumps(payload).encode())


async def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> dict[int, int]:
    """Produce one record at a time; return, per partition, the offset after the last one."""
    producer = make_producer(settings.kafka_bootstrap_servers or "")
    await producer.start()
    ends: dict[int, int] = {}
    try:
        for key, value in records:
            sent = await producer.send_and_wait(settings.topic_events, value, key=key)
            ends[sent.partition] = max(ends.get(sent.partition, 0), sent.offset + 1)
    finally:
        await producer.stop()
    return ends


async def offsets_are(settings: Settings, expected: dict[int, int]) -> bool:
    """True when the group's committed offsets are exactly `expected` (for `poll`)."""
    return await committed_offsets(settings) == expected


async def committed_offsets(settings: Settings) -> dict[int, int]:
    """The segmenter group's committed offsets on the events topic (partitions with one)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.segmenter_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        await consumer.topics()
        found = {}
        for number in sorted(consumer.partitions_for_topic(settings.topic_events) or ()):
            offset = await consumer.committed(TopicPartition(settings.topic_events, number))
            if offset is not None:
                found[number] = offset
        return found
    finally:
        await consumer.stop()
