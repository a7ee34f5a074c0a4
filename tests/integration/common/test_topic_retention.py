"""Topics segflow creates carry the configured retention: the bound on how long raw payloads
(and so a redacted customer's data) stay in Kafka. The embedded broker accepts the setting but
cannot report it back (no DescribeConfigs), and keeps nothing past its own life anyway."""

import uuid

from services.common.kafka import ensure_topics, make_producer, topic_configs
from tests.helpers import drain_topic


def test_the_retention_is_given_in_milliseconds() -> None:
    assert topic_configs(168) == {"retention.ms": str(7 * 24 * 3600 * 1000)}
    assert topic_configs(None) == {}


async def test_a_topic_created_with_a_retention_works(kafka_bootstrap: str) -> None:
    topic = f"retention-{uuid.uuid4().hex[:8]}"
    assert await ensure_topics(kafka_bootstrap, [topic], 1, retention_hours=48) == [topic]
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"kept for 48 hours", key=b"k")
    finally:
        await producer.stop()
    assert [r.value for r in await drain_topic(kafka_bootstrap, topic)] == [b"kept for 48 hours"]
