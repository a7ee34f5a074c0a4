"""The segmenter's Prometheus metrics."""

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Stages take from under a millisecond (decode) to seconds (a backlog in the fetch buffer).
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# The consumer loop's stages, in order (the label values of `stage_seconds`).
STAGES = ("fetch", "decode", "apply", "db_commit", "publish", "offset_commit")


@dataclass(frozen=True)
class SegmenterMetrics:
    events: Counter
    dead_letters: Counter
    batch_size: Histogram
    batch_seconds: Histogram
    stage_seconds: Histogram
    evaluation_seconds: Histogram
    end_to_end_seconds: Histogram
    consumer_lag: Gauge
    segment_changes: Counter
    changes_published: Counter
    outbox_backlog: Gauge
    segment_members: Gauge
    outbox_oldest_seconds: Gauge
    due_backlog: Gauge
    scheduled_evaluations: Counter
    retries: Counter
    privacy_requests: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "SegmenterMetrics":
        """Register the segmenter metrics in `registry`."""
        return cls(
            events=Counter(
                "segflow_segmenter_events",
                "Events by topic and outcome (applied, ignored, duplicate, dead_letter, erased: "
                "of a customer, order or shop erased by a privacy request)",
                ["topic", "outcome"],
                registry=registry,
            ),
            dead_letters=Counter(
                "segflow_segmenter_dead_letters",
                "Events sent to the dead-letter topic, by reason",
                ["reason"],
                registry=registry,
            ),
            batch_size=Histogram(
                "segflow_segmenter_batch_size",
                "Events per processed batch",
                buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
                registry=registry,
            ),
            batch_seconds=Histogram(
                "segflow_segmenter_batch_seconds",
                "Time to process one batch: decode, transaction, publish, commit",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            stage_seconds=Histogram(
                "segflow_segmenter_stage_seconds",
                "Time in each stage of the consumer loop: fetch (per record, from its Kafka "
                "timestamp to its batch being taken), then per batch decode, apply (the "
                "transaction's work), db_commit, publish (the outbox) and offset_commit",
                ["stage"],
                buckets=_STAGE_BUCKETS,
                registry=registry,
            ),
            evaluation_seconds=Histogram(
                "segflow_segmenter_evaluation_seconds",
                "Time one batch spends evaluating segment rules (CPU, within apply)",
                buckets=_STAGE_BUCKETS,
                registry=registry,
            ),
            end_to_end_seconds=Histogram(
                "segflow_segmenter_end_to_end_seconds",
                "From ingest receiving the causing event to the change being published",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            consumer_lag=Gauge(
                "segflow_segmenter_consumer_lag",
                "Records behind the partition's high watermark",
                ["topic", "partition"],
                registry=registry,
            ),
            segment_changes=Counter(
                "segflow_segment_changes",
                "Segment entries and exits, by segment handle",
                ["segment", "change"],
                registry=registry,
            ),
            changes_published=Counter(
                "segflow_segmenter_changes_published",
                "Outbox rows published to the segment-changes topic",
                registry=registry,
            ),
            # Read from the database each scheduler round: every member shows the same figures
            # (aggregate with max, not sum).
            outbox_backlog=Gauge(
                "segflow_outbox_backlog",
                "Outbox rows not yet published to the segment-changes topic, by lane (live, bulk)",
                ["lane"],
                registry=registry,
            ),
            outbox_oldest_seconds=Gauge(
                "segflow_outbox_oldest_unpublished_seconds",
                "Age of the lane's oldest unpublished outbox row (0 when none waits)",
                ["lane"],
                registry=registry,
            ),
            segment_members=Gauge(
                "segflow_segment_members",
                "Customers in each segment, summed over shops, by handle (built-in handles; "
                "the merchants' own read other), counted every segment_sizes_interval_seconds",
                ["segment"],
                registry=registry,
            ),
            due_backlog=Gauge(
                "segflow_scheduler_due_backlog",
                "Customers whose next evaluation time has passed",
                registry=registry,
            ),
            scheduled_evaluations=Counter(
                "segflow_scheduler_evaluations",
                "Customers re-evaluated because time passed",
                registry=registry,
            ),
            retries=Counter(
                "segflow_segmenter_retries",
                "Batches (component=consumer) or scheduler rounds retried because a dependency "
                "failed, by the dependency and the error's class",
                ["component", "dependency", "reason"],
                registry=registry,
            ),
            privacy_requests=Counter(
                "segflow_privacy_requests",
                "Shopify compliance requests carried out, by kind (customer_redacted, "
                "shop_redacted, data_requested)",
                ["kind"],
                registry=registry,
            ),
        )
