"""Prometheus helpers: one registry per service instance, served on /metrics."""

import os
from collections.abc import Collection
from functools import cache

from aiokafka import TopicPartition
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from services.common.envelope import CustomEventType
from services.common.shopify import TOPIC_MODELS

# prometheus_client's own switch: with it set when the process starts, every metric value is
# kept in a file of that directory, so several processes serving one port (ingest under
# `segflow dev`) can each answer a scrape with the sum over all of them.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


# The label a tenant-chosen value gets when it is not one segflow knows: no client can grow a
# metric's series without limit by inventing topics, Flow events or segment handles.
OTHER = "other"


def bounded_label(value: str, known: Collection[str]) -> str:
    """`value` where it is one of `known`, else OTHER."""
    return value if value in known else OTHER


def topic_label(topic: str) -> str:
    """An event topic as a metric label: Shopify topics segflow reads, `flow` for every Flow
    event (their names are the merchant's), `custom/<type>` (a fixed set), else OTHER."""
    if topic.startswith("flow/"):
        return "flow"
    return bounded_label(topic, _known_topics())


@cache
def _known_topics() -> frozenset[str]:
    return frozenset(TOPIC_MODELS) | {f"custom/{kind.value}" for kind in CustomEventType}


def forget_partitions(lag: Gauge, partitions: Collection[TopicPartition]) -> None:
    """Drop the `{topic, partition}` series of partitions this member gave up: their new owner
    reports them, and a value left here would read as lag for ever."""
    for tp in partitions:
        lag.remove(tp.topic, str(tp.partition))


def new_registry() -> CollectorRegistry:
    """A fresh registry, so two app instances (tests, replicas in one process) never collide."""
    return CollectorRegistry(auto_describe=True)


def mount_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
    """Serve the registry in Prometheus text format at GET /metrics.

    In multiprocess mode the scrape shows every process's values summed instead (counters and
    histograms; a process that has exited keeps its counts).
    """
    served = registry
    directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if directory:
        served = CollectorRegistry()
        MultiProcessCollector(served, path=directory)  # type: ignore[no-untyped-call]

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(served), media_type=CONTENT_TYPE_LATEST)
