"""Every producer compresses: records reach the real broker in zstd batches and read back whole."""

import json
import uuid

from aiokafka import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition

from services.common.kafka import ensure_topics, make_producer
from tests.helpers import consume


async def stored_codecs(bootstrap: str, topic: str) -> list[int]:
    """The compression codec of each record batch the broker holds in partition 0."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        cluster = await client.fetch_all_metadata()
        leader = cluster.leader_for_partition(TopicPartition(topic, 0))
        # Tansu answers a fetch with no wait at all with no topics: give it 100 ms.
        request = FetchRequest(100, 1, 10_000_000, 0, [(topic, [(0, 0, 10_000_000)])])
        response = await client.send(leader, request)
        raw = response.topics[0][1][0][-1]
    finally:
        await client.close()
    records = MemoryRecords(raw)
    codecs = []
    while records.has_next():
        batch = records.next_batch()
        assert isinstance(batch, DefaultRecordBatch)
        codecs.append(batch.compression_type)
    return codecs


async def test_produced_batches_are_stored_compressed_and_decode(kafka_bootstrap: str) -> None:
    topic = f"compression.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], partitions=1)
    values = [json.dumps({"n": n, "text": "an order line " * 50}).encode() for n in range(20)]
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, values[0], partition=0)
        sent = [await producer.send(topic, value, partition=0) for value in values[1:]]
        for future in sent:
            await future
    finally:
        await producer.stop()

    codecs = await stored_codecs(kafka_bootstrap, topic)
    assert codecs, "the broker returned no record batch"
    assert set(codecs) == {DefaultRecordBatch.CODEC_ZSTD}
    records = await consume(kafka_bootstrap, topic, len(values))
    assert [record.value for record in records] == values
