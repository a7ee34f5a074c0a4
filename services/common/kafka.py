"""Kafka wiring with aiokafka: producer, topic creation and readiness checks."""

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

logger = logging.getLogger(__name__)


# Every producer compresses its batches. The embedded broker (Tansu, memory storage) keeps
# every record it was sent for as long as it runs, as sent: compression is what bounds its
# memory. Chosen by measurement (bench/RESULTS.md, 2026-12-02).
COMPRESSION = "zstd"


def make_producer(
    bootstrap_servers: str, *, request_timeout_ms: int = 10_000, compression: str = COMPRESSION
) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica (acks=all); start and stop it yourself.

    No idempotence: the embedded broker cannot grant producer ids, so duplicates are removed
    downstream by event id instead.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        compression_type=None if compression == "none" else compression,
        linger_ms=2,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=100,
        metadata_max_age_ms=30_000,
    )


async def wait_for_broker(bootstrap_servers: str, timeout: float = 30.0) -> None:
    """Return once the broker answers metadata requests; raise TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=2_000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            last_error = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"Kafka at {bootstrap_servers} not reachable: {last_error}")


def topic_configs(retention_hours: int | None) -> dict[str, str]:
    """The configuration segflow gives the topics it creates."""
    return {"retention.ms": str(retention_hours * 3_600_000)} if retention_hours else {}


async def ensure_topics(
    bootstrap_servers: str,
    topics: list[str],
    partitions: int,
    replication_factor: int = 1,
    retention_hours: int | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (with that retention); return the names created.

    Existing topics keep their configuration: changing it is the operator's (kafka-configs).
    """
    configs = topic_configs(retention_hours)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(name, partitions, replication_factor, topic_configs=configs)
                        for name in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another process won the race; the topic is there, which is all we need
            logger.info("created topics %s with %d partitions", missing, partitions)
        return missing
    finally:
        await admin.close()


async def broker_ready(producer: AIOKafkaProducer, timeout: float = 2.0) -> bool:
    """True when the producer's client can fetch cluster metadata now."""
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
    except (KafkaError, OSError, TimeoutError):
        return False
    return bool(producer.client.cluster.brokers())


def make_consumer(
    bootstrap_servers: str,
    group_id: str,
    *,
    max_records: int = 500,
    max_poll_interval_ms: int = 300_000,
    session_timeout_ms: int = 10_000,
    rebalance_timeout_ms: int = 360_000,
    fetch_max_wait_ms: int = 10,
) -> AIOKafkaConsumer:
    """A consumer-group member (subscribe it yourself) that never commits by itself.

    Offsets are committed explicitly after the database transaction, `{tp: last.offset + 1}`.

    `max_records` bounds a batch; `max_poll_interval_ms` must exceed the worst batch time,
    because rule evaluation is CPU work that holds the event loop. `rebalance_timeout_ms` is
    how long the group waits in a rebalance for this member to finish its batch and rejoin;
    it must exceed `max_poll_interval_ms`, or a member committing a slow batch during a
    rebalance is evicted (aiokafka's default is the session timeout, a few seconds).

    `fetch_max_wait_ms` is how long the broker may hold a fetch that finds no new records.
    Tansu does not answer a waiting fetch when records arrive: it answers at the deadline,
    so aiokafka's default of 500 ms put 0-500 ms (half of it on average) on every event
    that arrives while the consumer is caught up. 10 ms costs an idle consumer about 100
    small fetches a second.
    """
    if rebalance_timeout_ms <= max_poll_interval_ms:
        raise ValueError("rebalance_timeout_ms must exceed max_poll_interval_ms")
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        max_poll_interval_ms=max_poll_interval_ms,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, session_timeout_ms // 4),
        rebalance_timeout_ms=rebalance_timeout_ms,
        isolation_level="read_uncommitted",
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
