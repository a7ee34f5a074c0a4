"""The tagger's Prometheus metrics (label values bounded: no tenant input in them)."""

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass(frozen=True)
class TaggerMetrics:
    changes: Counter
    echoes: Counter
    consumer_lag: Gauge
    tag_writes: Counter
    reconciled: Counter
    tag_backlog: Gauge
    parked: Gauge
    bulk_operations: Counter
    enrolments: Gauge
    journey_sends: Gauge
    due_steps: Gauge
    conversions: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "TaggerMetrics":
        """Register the tagger metrics in `registry`."""
        return cls(
            changes=Counter(
                "segflow_tagger_changes",
                "Segment changes consumed, by lane (live, bulk) or unreadable",
                ["lane"],
                registry=registry,
            ),
            echoes=Counter(
                "segflow_tagger_echoes",
                "Ledger entries a tags webhook moved, by the entry's new state (or dropped)",
                ["state"],
                registry=registry,
            ),
            consumer_lag=Gauge(
                "segflow_tagger_consumer_lag",
                "Records behind the partition's high watermark, as of the last batch taken",
                ["topic", "partition"],
                registry=registry,
            ),
            tag_writes=Counter(
                "segflow_tagger_tag_operations",
                "tagsAdd/tagsRemove calls by operation and result "
                "(ok, user_error, unavailable, auth_error)",
                ["operation", "result"],
                registry=registry,
            ),
            reconciled=Counter(
                "segflow_tagger_reconciled",
                "Customers whose tags were reconciled, by result (done, retry, parked)",
                ["result"],
                registry=registry,
            ),
            tag_backlog=Gauge(
                "segflow_tagger_tag_backlog",
                "Customers waiting for a look at their tags, by lane",
                ["lane"],
                registry=registry,
            ),
            parked=Gauge(
                "segflow_tagger_parked_operations",
                "Customers whose tag writes reached the retry bound (still retried, less often)",
                registry=registry,
            ),
            bulk_operations=Counter(
                "segflow_tagger_bulk_operations",
                "Bulk tag mutations by status (completed, failed)",
                ["status"],
                registry=registry,
            ),
            # The journeys' totals, read from the database each round: every replica shows
            # the same figures (aggregate with max, not sum).
            enrolments=Gauge(
                "segflow_tagger_enrolments",
                "Journey enrolments by state (active, completed, exited) and group",
                ["state", "group"],
                registry=registry,
            ),
            journey_sends=Gauge(
                "segflow_tagger_journey_sends",
                "Journey steps recorded, by state (sent, suppressed, skipped, failed, ...)",
                ["state"],
                registry=registry,
            ),
            due_steps=Gauge(
                "segflow_tagger_due_steps",
                "Active enrolments whose next step is due now (the send scheduler's backlog)",
                registry=registry,
            ),
            conversions=Gauge(
                "segflow_tagger_conversions",
                "Orders counted as journey conversions, by group",
                ["group"],
                registry=registry,
            ),
        )
