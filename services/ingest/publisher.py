"""Puts envelopes on segflow.events and waits for the broker's acknowledgement."""

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.common.envelope import EnvelopeMeta, encode_envelope, partition_key
from services.common.metrics import topic_label
from services.ingest.metrics import IngestMetrics


class BrokerUnavailableError(Exception):
    """Kafka did not acknowledge in time; the caller answers 503 so the sender retries."""


class EventPublisher:
    """Produces envelopes keyed shop/customer with acks=all, within a deadline."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, timeout: float, metrics: IngestMetrics
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._timeout = timeout
        self._metrics = metrics

    async def publish(self, events: Sequence[tuple[EnvelopeMeta, bytes]]) -> None:
        """Produce every (meta, payload JSON) pair; return only when all are acknowledged."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                pending = [await self._send(meta, payload) for meta, payload in events]
                await asyncio.gather(*pending)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise BrokerUnavailableError(str(exc) or type(exc).__name__) from exc
        self._metrics.produce_seconds.observe(time.perf_counter() - started)
        for meta, _ in events:
            self._metrics.events.labels(meta.source, topic_label(meta.topic)).inc()

    async def _send(self, meta: EnvelopeMeta, payload: bytes) -> "asyncio.Future[object]":
        future: asyncio.Future[object] = await self._producer.send(
            self._topic,
            encode_envelope(meta, payload),
            key=partition_key(meta.shop, meta.customer_id),
            headers=[("topic", meta.topic.encode()), ("event_id", meta.event_id.encode())],
        )
        return future
