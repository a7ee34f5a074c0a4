"""All configuration, from the environment: SEGFLOW_*, DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS."""

import ipaddress
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    # `segflow dev --with-monitoring` only: the local Prometheus's port, and how often it
    # scrapes every role and evaluates the alert rules.
    prometheus_port: int = Field(default=9090, ge=1, le=65535)
    prometheus_scrape_interval_seconds: float = Field(default=5.0, ge=0.1, le=300)
    # Every role: how long it may take to stop after SIGINT/SIGTERM (answer the requests in
    # flight, finish and commit the batch in hand, close its clients). Past it the process
    # logs what it abandons and exits 1 at once, before an orchestrator's SIGKILL would (keep
    # it below Kubernetes' terminationGracePeriodSeconds, compose's stop_grace_period).
    shutdown_timeout_seconds: float = Field(default=25.0, gt=0)

    # The tagger (`segflow tagger`): its HTTP port (health, metrics, journeys API), its
    # consumer group on the changes and events topics, and its tag reconciler.
    tagger_port: int = 8002
    tagger_group: str = "segflow-tagger"
    # How often the reconciler looks at the tag queue when nothing pokes it.
    tagger_interval_seconds: float = Field(default=1.0, gt=0)
    # Customers leased per round on the live lane, and how long a lease holds.
    tagger_batch_size: int = Field(default=100, ge=1)
    tagger_lease_seconds: float = Field(default=120.0, gt=0)
    # Bulk work (imports, backfills): from this many customers of one shop in one round it
    # goes through Shopify's bulk mutation; a round takes up to tagger_bulk_batch_size.
    tagger_bulk_threshold: int = Field(default=500, ge=1)
    tagger_bulk_batch_size: int = Field(default=100_000, ge=1)
    # A bulk lease is short and renewed (every third of it) while its holder waits on the
    # operation, so a live change of a customer held by a dead reconciler waits at most this.
    tagger_bulk_lease_seconds: float = Field(default=120.0, gt=0)
    # How long a bulk operation is polled before the reconciler lets go of it (it goes on
    # running on Shopify: its result is read later, every tagger_bulk_repoll_seconds).
    tagger_bulk_poll_timeout_seconds: float = Field(default=900.0, gt=0)
    tagger_bulk_repoll_seconds: float = Field(default=30.0, gt=0)
    # A customer's tag writes are parked after this many failed rounds, then retried at
    # this interval (never dropped).
    tagger_max_attempts: int = Field(default=8, ge=1)
    tagger_parked_retry_seconds: float = Field(default=900.0, gt=0)
    # The Admin API version segflow speaks to Shopify.
    shopify_api_version: str = "2026-01"
    # Attempts per Admin API request (throttled, 429, 5xx, timeouts), with a backoff doubling
    # from the first delay up to the last (jittered), before the tagger puts the work back.
    shopify_retry_attempts: int = Field(default=6, ge=1)
    shopify_retry_initial_seconds: float = Field(default=0.5, gt=0)
    shopify_retry_max_seconds: float = Field(default=30.0, gt=0)
    # Keys sealing shops' Admin API tokens at rest: `id:base64url-32-byte-key,...`, the first
    # seals (services/common/sealing.py). `segflow dev` makes one under the data dir.
    sealing_keys: SecretStr | None = None

    topic_events: str = "segflow.events"
    topic_segment_changes: str = "segflow.segment-changes"
    topic_dead_letter: str = "segflow.dead-letter"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    # retention.ms of the topics segflow creates. Raw webhook payloads (emails, names) live in
    # segflow.events and segflow.dead-letter this long: the bound on how long a redacted
    # customer's data survives in Kafka (SECURITY.md).
    topic_retention_hours: int = Field(default=168, ge=1)

    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    # Request bodies of the segmenter API and the tagger's API (rules, journeys: a few KB).
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Shopify webhook freshness (X-Shopify-Triggered-At, unsigned): a retry keeps the original
    # trigger time and Shopify retries for 4 hours, so the window is well above that; it stays
    # within the dedupe retention, so a verbatim replay inside it is a duplicate. 0: off.
    webhook_max_age_seconds: int = Field(default=24 * 3600, ge=0)
    # How far ahead of this clock a trigger time may be (the two clocks' skew).
    webhook_max_future_seconds: int = Field(default=300, ge=0)
    # Per-shop token buckets (per process): requests per second and burst, per endpoint class.
    # 0 requests per second: that class is not limited.
    rate_limit_read_per_second: float = Field(default=50.0, ge=0)
    rate_limit_read_burst: int = Field(default=200, ge=1)
    rate_limit_write_per_second: float = Field(default=5.0, ge=0)
    rate_limit_write_burst: int = Field(default=20, ge=1)
    rate_limit_events_per_second: float = Field(default=200.0, ge=0)
    rate_limit_events_burst: int = Field(default=1000, ge=1)
    # A segment write (create, change, delete, preview) holds one of the API's database
    # connections until its backfill ends: one shop may have this many in flight per process,
    # so it never takes the whole pool (db_pool_max) from the others. Beyond it: 429.
    api_writes_in_flight_per_shop: int = Field(default=2, ge=1)
    max_batch_events: int = Field(default=1000, ge=1)
    segmenter_batch_size: int = Field(default=500, ge=1)
    # A segment's backfill runs in chunks of this many customers, each a short transaction of
    # its own, so the shop's events (and other shops' in the same batch) flow between them.
    backfill_chunk_size: int = Field(default=5000, ge=1, le=100_000)
    # A backfill runner renews this lease every chunk; past it (the API died mid-backfill)
    # the segmenter claims the backfill and continues from where it stopped.
    backfill_lease_seconds: float = Field(default=60.0, gt=0)
    # Every segment of a shop is evaluated for each customer in a batch: this bounds the work
    # (README, "Bounded evaluation").
    max_segments_per_shop: int = Field(default=100, ge=1, le=1000)
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
    # How long the broker may hold a consumer's fetch that finds nothing (services/common/
    # kafka.py). 10 ms keeps a caught-up consumer's latency low; the embedded broker's fetches
    # slow down as its memory log grows, and past about 10k batches per partition they come
    # back empty at 10 ms: raise it (100) for long runs on it (README, "The embedded broker").
    consumer_fetch_max_wait_ms: int = Field(default=10, ge=1, le=10_000)
    # How long an offset commit may wait for the broker before the batch is retried.
    offset_commit_timeout_seconds: float = Field(default=10.0, gt=0)
    # How long the worker's outbox publisher waits for the acks of one batch of changes (up
    # to 500) before the round is retried.
    outbox_send_timeout_seconds: float = Field(default=10.0, gt=0)
    scheduler_interval_seconds: float = Field(default=1.0, gt=0)
    # How often the scheduler counts each segment's members for the segment sizes gauge.
    segment_sizes_interval_seconds: float = Field(default=60.0, gt=0)
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

    # Journeys: at most this many marketing emails to one customer, across all journeys, in
    # any rolling window of this many hours; a step over the cap is deferred, never dropped.
    journey_cap_emails: int = Field(default=2, ge=1, le=100)
    journey_cap_window_hours: float = Field(default=24.0, gt=0, le=24 * 31)
    # The zone for quiet hours when neither the customer's address nor the shop gives one.
    journey_default_timezone: str = "UTC"
    # The coupon code the shipped offer emails show (welcome day 7, VIP offers, win-back);
    # unset: those steps cannot be composed and are recorded failed, never sent half-filled.
    journey_coupon_code: str | None = Field(default=None, max_length=64)
    # A journey email's `sending` record is this process's for so long; after it, another
    # replica takes it for one that died mid-send and settles it without sending. Must exceed
    # four SMTP timeouts (connect, MAIL, RCPT, DATA), so a live send is never taken.
    journey_send_lease_seconds: float = Field(default=180.0, gt=0)

    demo_shop_domain: str = "demo.myshopify.com"
    # The demo shop's time zone on the local Shopify stand-in (read back by its connect).
    demo_shop_timezone: str = "America/New_York"
    demo_webhook_secret: str | None = None
    demo_api_token: str | None = None
    demo_flow_secret: str | None = None
    demo_read_key: str | None = None
    demo_events_key: str | None = None
    # The demo shop's Admin API token on the local Shopify stand-in (else one per start).
    demo_shopify_token: str | None = None

    # The operator's bearer token for the API's /v1/admin endpoints (shops, rotation); unset,
    # those endpoints are closed. The previous one also opens them while it is being rotated.
    operator_token: SecretStr | None = Field(default=None, min_length=32)
    operator_token_previous: SecretStr | None = Field(default=None, min_length=32)
    # How long a process may keep using a looked-up shop credential: the bound on how late a
    # revoked key (or a deleted shop) stops opening anything. An expiry is never outlived.
    shop_cache_ttl_seconds: float = Field(default=10.0, ge=0, le=300)

    # Email (the tagger's journeys). The SMTP server mail is handed to; `segflow mailbox` and
    # `segflow dev` run a local one here that keeps every message as an .eml file.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    # "starttls" upgrades a plain connection (port 587), "tls" connects over TLS (port 465).
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # Bounds each SMTP step (connect, each command, the message data).
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # Where the local mailbox stores messages; unset: `mail` under the data dir.
    mailbox_dir: Path | None = None
    # Test hook: "CODE:N" makes `segflow mailbox` refuse its first N messages with CODE (4xx
    # or 5xx), so a sender's error handling can be tried against a real server.
    mailbox_refuse: str | None = Field(default=None, pattern=r"^[45][0-9][0-9]:[1-9][0-9]*$")
    # The From address of journey mail (its display name is the shop's); its domain is the
    # Message-ID's. The envelope sender (bounces) is email_return_path, else this one.
    email_from_address: str = "hello@segflow.test"
    email_return_path: str | None = None
    # The public base URL of the tagger's unsubscribe endpoint, HTTPS in production; unset in
    # development: the tagger's local port.
    unsubscribe_base_url: str | None = None
    # Optional mailto: address added to List-Unsubscribe beside the HTTPS link.
    unsubscribe_mailto: str | None = None
    # Unsubscribe token keys, "key_id:secret" separated by commas; the first signs, all verify.
    unsubscribe_keys: SecretStr | None = None
    # DKIM signing of journey mail: all three set, or none (unsigned).
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key_path: Path | None = None

    @model_validator(mode="after")
    def _check_send_lease(self) -> "Settings":
        if self.journey_send_lease_seconds <= 4 * self.smtp_timeout_seconds:
            raise ValueError(
                "journey_send_lease_seconds must exceed 4 x smtp_timeout_seconds: a send "
                "still talking to SMTP must not be taken for a dead one"
            )
        return self

    @model_validator(mode="after")
    def _check_timeouts(self) -> "Settings":
        if self.consumer_rebalance_timeout_ms <= self.consumer_max_poll_interval_ms:
            raise ValueError(
                "consumer_rebalance_timeout_ms must exceed consumer_max_poll_interval_ms: "
                "a member finishing its batch in a rebalance must not be evicted"
            )
        if self.dev_stop_timeout_seconds <= self.shutdown_timeout_seconds:
            raise ValueError(
                "dev_stop_timeout_seconds must exceed shutdown_timeout_seconds: a role's own "
                "bound must run out before segflow dev kills it"
            )
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ValueError("retry_max_seconds must be at least retry_initial_seconds")
        if self.webhook_max_age_seconds > self.dedupe_retention_days * 86400:
            raise ValueError(
                "webhook_max_age_seconds must not exceed dedupe_retention_days: a replayed "
                "delivery young enough to pass must still be caught as a duplicate"
            )
        return self

    @field_validator("journey_default_timezone", "demo_shop_timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {name!r}") from exc
        return name

    @model_validator(mode="after")
    def _refuse_demo_secrets_in_production(self) -> "Settings":
        demo_secrets = (
            self.demo_webhook_secret,
            self.demo_api_token,
            self.demo_flow_secret,
            self.demo_read_key,
            self.demo_events_key,
            self.demo_shopify_token,
        )
        if self.environment == "production" and any(demo_secrets):
            raise ValueError("demo secrets are for development only; unset SEGFLOW_DEMO_*")
        if self.environment == "production" and self.crash_at:
            raise ValueError("SEGFLOW_CRASH_AT is a test hook; unset it in production")
        if self.environment == "production" and self.mailbox_refuse:
            raise ValueError("SEGFLOW_MAILBOX_REFUSE is a test hook; unset it in production")
        return self

    @model_validator(mode="after")
    def _check_operator_tokens(self) -> "Settings":
        if self.operator_token_previous is not None and self.operator_token is None:
            raise ValueError("SEGFLOW_OPERATOR_TOKEN_PREVIOUS needs SEGFLOW_OPERATOR_TOKEN")
        return self

    @model_validator(mode="after")
    def _check_email(self) -> "Settings":
        dkim = (self.dkim_domain, self.dkim_selector, self.dkim_private_key_path)
        if any(dkim) and not all(dkim):
            raise ValueError(
                "DKIM needs SEGFLOW_DKIM_DOMAIN, SEGFLOW_DKIM_SELECTOR and "
                "SEGFLOW_DKIM_PRIVATE_KEY_PATH together"
            )
        if self.smtp_username and self.smtp_tls == "none" and not _is_loopback(self.smtp_host):
            raise ValueError(
                "SMTP credentials would cross the network in clear: set SEGFLOW_SMTP_TLS"
            )
        if self.environment == "production" and self.unsubscribe_base_url is not None:
            if not self.unsubscribe_base_url.startswith("https://"):
                raise ValueError("SEGFLOW_UNSUBSCRIBE_BASE_URL must be https:// in production")
        return self

    def mailbox_directory(self) -> Path:
        """Where the local mailbox keeps its .eml files."""
        return self.mailbox_dir if self.mailbox_dir is not None else self.data_dir / "mail"

    def require_unsubscribe_base_url(self) -> str:
        """The unsubscribe links' base URL; in development the tagger's local port by default."""
        if self.unsubscribe_base_url:
            return self.unsubscribe_base_url.rstrip("/")
        if self.environment == "production":
            raise RuntimeError("SEGFLOW_UNSUBSCRIBE_BASE_URL is not set (an https:// URL)")
        return f"http://{self.host}:{self.tagger_port}"

    def require_unsubscribe_keys(self) -> str:
        """The unsubscribe token keys ("key_id:secret,..."), or an error naming the variable."""
        if self.unsubscribe_keys is None or not self.unsubscribe_keys.get_secret_value():
            raise RuntimeError(
                "SEGFLOW_UNSUBSCRIBE_KEYS is not set (key_id:secret, secrets of 32+ characters)"
            )
        return self.unsubscribe_keys.get_secret_value()

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
