"""All configuration, from the environment: SEGFLOW_*, DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS."""

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """segflow's settings; build one in the entry point and pass it down, never import a global."""

    model_config = SettingsConfigDict(
        env_prefix="SEGFLOW_", env_ignore_empty=True, extra="ignore", frozen=True
    )

    environment: Literal["development", "production"] = "development"
    log_level: str = "INFO"

    # Unset means "start the embedded one" in `segflow dev`; the services themselves require them.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "SEGFLOW_DATABASE_URL")
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "SEGFLOW_KAFKA_BOOTSTRAP_SERVERS"),
    )

    data_dir: Path = Path(".segflow")
    host: str = "127.0.0.1"
    ingest_port: int = 8000
    api_port: int = 8001
    # Each `segflow segmenter` serves /healthz, /readyz and /metrics here (it has no REST API);
    # `segflow dev` gives its members this port plus their index (0, 1, ...).
    segmenter_health_port: int = 8010
    broker_port: int = 9092
    # `segflow shopify-standin`: the local stand-in for Shopify's Admin GraphQL API.
    shopify_standin_host: str = "127.0.0.1"
    shopify_standin_port: int = Field(default=8003, ge=1, le=65535)
    # Bind ingest's port with SO_REUSEPORT, so several `segflow ingest` processes on one
    # machine share it and the kernel spreads connections over them. Off by default: two
    # processes started by mistake on one port should fail, not silently share it.
    ingest_reuse_port: bool = False

    # `segflow dev` only: how many processes run each role (ingest on one port, segmenter
    # members in one consumer group). Chosen for 2 cores by measurement (bench/RESULTS.md).
    ingest_processes: int = Field(default=1, ge=1, le=64)
    segmenter_processes: int = Field(default=2, ge=1, le=64)
    # `segflow dev` only: how long every role has to answer /readyz at start, and how long
    # each role has to exit after SIGTERM before it is killed.
    dev_ready_timeout_seconds: float = Field(default=90.0, gt=0)
    dev_stop_timeout_seconds: float = Field(default=30.0, gt=0)

    topic_events: str = "segflow.events"
    topic_segment_changes: str = "segflow.segment-changes"
    topic_dead_letter: str = "segflow.dead-letter"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(default=1000, ge=1)
    segmenter_batch_size: int = Field(default=500, ge=1)
    segmenter_group: str = "segflow-segmenter"
    # A member missing heartbeats this long is dropped from the group. The embedded broker
    # also waits about half of it before completing a join, so tests lower it.
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    # The longest a member may go without asking for records (a batch in hand, with its
    # retries) before it leaves the group and its partitions move on.
    consumer_max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    # How long the group waits, during a rebalance, for a member to finish the batch in hand
    # and rejoin. Above max_poll_interval (which bounds a batch), so a slow batch in a
    # rebalance never gets its member evicted while it is still committing.
    consumer_rebalance_timeout_ms: int = Field(default=360_000, ge=1_000)
    # A failing database or broker: the same batch is retried after a delay that doubles
    # from `retry_initial_seconds` up to `retry_max_seconds`, with jitter.
    retry_initial_seconds: float = Field(default=0.5, gt=0)
    retry_max_seconds: float = Field(default=30.0, gt=0)
    # How long a service waits at start for the broker before it exits non-zero.
    startup_timeout_seconds: float = Field(default=30.0, gt=0)
    # Bounds on the segmenter's own database work: a statement or a lock wait past them fails
    # the batch, which is then retried with backoff and shown on /readyz, rather than hanging
    # (and holding up a rebalance) for as long as the database does.
    segmenter_statement_timeout_seconds: float = Field(default=60.0, gt=0)
    segmenter_lock_timeout_seconds: float = Field(default=20.0, gt=0)
    # How long an offset commit may wait for the broker before the batch is retried.
    offset_commit_timeout_seconds: float = Field(default=10.0, gt=0)
    # How long the worker's outbox publisher waits for the acks of one batch of changes (up
    # to 500) before the round is retried.
    outbox_send_timeout_seconds: float = Field(default=10.0, gt=0)
    scheduler_interval_seconds: float = Field(default=1.0, gt=0)
    dedupe_retention_days: int = Field(default=7, ge=1)
    # Engagement events (custom/page_viewed, …) only count by their ids: keep those longer
    # than the events topic keeps events, so no replay of it can count one twice.
    engagement_dedupe_retention_days: int = Field(default=35, ge=1)
    # Published segment changes are kept this long in the outbox (segment_changes), then purged.
    outbox_retention_days: int = Field(default=7, ge=1)
    # How long ingest waits for the broker's acknowledgement before answering 503.
    produce_timeout_seconds: float = Field(default=5.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1)
    db_pool_min: int = 1
    db_pool_max: int = 10

    # Test hook: "point:n" makes the segmenter SIGKILL itself the n-th time it reaches `point`
    # (after_db_commit, before_marking_published, after_publish, after_offset_commit), to prove
    # that a crash anywhere replays safely; "point:n:raise" raises an unexpected error there
    # instead, as a bug in the consumer would.
    crash_at: str | None = Field(default=None, pattern=r"^[a-z_]+(:[1-9][0-9]*(:raise)?)?$")

    demo_shop_domain: str = "demo.myshopify.com"
    demo_webhook_secret: str | None = None
    demo_api_token: str | None = None
    demo_flow_secret: str | None = None

    @model_validator(mode="after")
    def _check_timeouts(self) -> "Settings":
        if self.consumer_rebalance_timeout_ms <= self.consumer_max_poll_interval_ms:
            raise ValueError(
                "consumer_rebalance_timeout_ms must exceed consumer_max_poll_interval_ms: "
                "a member finishing its batch in a rebalance must not be evicted"
            )
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must be at least retry_initial_seconds")
        return self

    @model_validator(mode="after")
    def _refuse_demo_secrets_in_production(self) -> "Settings":
        demo_secrets = (self.demo_webhook_secret, self.demo_api_token, self.demo_flow_secret)
        if self.environment == "production" and any(demo_secrets):
            raise ValueError("demo secrets are for development only; unset SEGFLOW_DEMO_*")
        if self.environment == "production" and self.crash_at:
            raise ValueError("SEGFLOW_CRASH_AT is a test hook; unset it in production")
        return self

    def require_database_url(self) -> str:
        """The database URL, or a clear error naming the variable to set."""
        if not self.database_url:
            raise RuntimeError(
                "DATABASE_URL is not set (or run `segflow dev` for the embedded one)"
            )
        return self.database_url

    def require_kafka(self) -> str:
        """The Kafka bootstrap servers, or a clear error naming the variable to set."""
        if not self.kafka_bootstrap_servers:
            raise RuntimeError(
                "KAFKA_BOOTSTRAP_SERVERS is not set (or run `segflow dev` for the embedded one)"
            )
        return self.kafka_bootstrap_servers
