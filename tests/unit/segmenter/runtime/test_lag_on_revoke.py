"""A segmenter member that gives up partitions drops their lag series (the new owner reports
them; a value left behind would read as lag for ever)."""

import asyncio

from aiokafka import TopicPartition

from services.common.metrics import new_registry
from services.segmenter.runtime.health import ConsumerHealth
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.worker import _FinishBatchOnRevoke


async def test_revoked_partitions_lose_their_lag_series_and_kept_ones_stay() -> None:
    registry = new_registry()
    metrics = SegmenterMetrics.create(registry)
    metrics.consumer_lag.labels("segflow.events", "0").set(40)
    metrics.consumer_lag.labels("segflow.events", "1").set(7)
    listener = _FinishBatchOnRevoke(
        asyncio.Lock(), asyncio.Event(), ConsumerHealth(), metrics.consumer_lag
    )
    await listener.on_partitions_revoked([TopicPartition("segflow.events", 0)])

    def lag(partition: str) -> float | None:
        labels = {"topic": "segflow.events", "partition": partition}
        return registry.get_sample_value("segflow_segmenter_consumer_lag", labels)

    assert lag("0") is None
    assert lag("1") == 7
    # A partition never reported (or revoked twice) is no error.
    await listener.on_partitions_revoked([TopicPartition("segflow.events", 0)])
