"""The ingest service's Prometheus metrics."""

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class IngestMetrics:
    requests: Counter
    events: Counter
    produce_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "IngestMetrics":
        """Register the ingest metrics in `registry`."""
        return cls(
            requests=Counter(
                "segflow_ingest_requests",
                "Ingest requests by endpoint and outcome (accepted or the rejection reason)",
                ["endpoint", "outcome"],
                registry=registry,
            ),
            events=Counter(
                "segflow_ingest_events",
                "Events acknowledged by Kafka, by source and topic",
                ["source", "topic"],
                registry=registry,
            ),
            produce_seconds=Histogram(
                "segflow_ingest_produce_seconds",
                "Time from produce to the broker's acknowledgement",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
                registry=registry,
            ),
        )
