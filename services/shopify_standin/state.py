"""Everything the stand-in holds, in memory: shops with their tokens, buckets, customers,
webhook subscriptions, bulk operations, injected faults and logs."""

import itertools
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from services.shopify_standin.bucket import LeakyBucket

DEFAULT_API_VERSION = "2026-04"
# Shopify lets an app run this many bulk mutations at once per shop from API 2026-01 on.
DEFAULT_BULK_MUTATION_LIMIT = 5
DEFAULT_SCOPES = ("read_customers", "write_customers")
DEFAULT_TIMEZONE = "UTC"
# The newest entries of each log are kept; older ones are dropped.
REQUEST_LOG_SIZE = 50_000
DELIVERY_LOG_SIZE = 20_000

FaultKind = Literal["status", "throttle_429", "slow", "bulk"]
BulkStatus = Literal["CREATED", "RUNNING", "COMPLETED", "FAILED", "CANCELED"]


def utc_now() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """Shopify's DateTime text: UTC, seconds, `Z`."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Customer:
    id: int
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = field(default_factory=list)
    marketing_state: str = "NOT_SUBSCRIBED"
    opt_in_level: str | None = None
    consent_updated_at: datetime | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)


@dataclass
class Subscription:
    id: int
    topic: str
    uri: str
    format: str
    api_version: str
    include_fields: list[str]
    filter: str | None
    created_at: datetime


@dataclass
class BulkOperation:
    id: int
    query: str
    created_at: datetime
    status: BulkStatus = "CREATED"
    completed_at: datetime | None = None
    object_count: int = 0
    file_size: int | None = None
    url: str | None = None
    error_code: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("COMPLETED", "FAILED", "CANCELED")


@dataclass
class Fault:
    """The next `count` GraphQL requests of a shop answer `status` (with `Retry-After` for a
    429) or are delayed by `delay_ms`; a `bulk` fault applies to the shop's next bulk run,
    which fails the input `lines` listed and waits `delay_ms` in CREATED before it starts."""

    kind: FaultKind
    count: int = 1
    status: int = 503
    retry_after: float = 1.0
    delay_ms: int = 0
    # A status fault that runs the request first and then loses the answer, as a gateway
    # timing out after the write landed would.
    after_execute: bool = False
    lines: frozenset[int] = frozenset()


@dataclass
class StagedUpload:
    key: str
    shop: str
    filename: str
    signature: str
    body: bytes | None = None


@dataclass
class Shop:
    domain: str
    numeric_id: int
    access_token: str
    webhook_secret: str
    bucket: LeakyBucket
    auto_create_customers: bool = False
    bulk_mutation_limit: int = DEFAULT_BULK_MUTATION_LIMIT
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    # The shop's time zone as its settings say (Admin GraphQL `shop { ianaTimezone }`).
    iana_timezone: str = DEFAULT_TIMEZONE
    customers: dict[int, Customer] = field(default_factory=dict)
    subscriptions: list[Subscription] = field(default_factory=list)
    bulk_operations: dict[int, BulkOperation] = field(default_factory=dict)
    faults: deque[Fault] = field(default_factory=deque)
    request_log: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE)
    )

    def take_fault(self, kinds: tuple[FaultKind, ...]) -> Fault | None:
        """The first pending fault of one of `kinds`, used once (removed when spent)."""
        for fault in self.faults:
            if fault.kind in kinds:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def running_bulk_mutations(self) -> list[BulkOperation]:
        return [op for op in self.bulk_operations.values() if not op.finished]


class StandinState:
    """The shops and the shared counters; one per stand-in app."""

    def __init__(self) -> None:
        self.shops: dict[str, Shop] = {}
        self.by_token: dict[str, Shop] = {}
        self.uploads: dict[str, StagedUpload] = {}
        # Result files of bulk operations, by the unguessable name in their URL.
        self.results: dict[str, bytes] = {}
        self.delivery_log: deque[dict[str, Any]] = deque(maxlen=DELIVERY_LOG_SIZE)
        self._ids: Iterator[int] = itertools.count(1_000_001)

    def next_id(self) -> int:
        """A fresh numeric id (subscriptions, bulk operations, shops)."""
        return next(self._ids)

    def add_upload(self, key: str, shop: str, filename: str, signature: str) -> StagedUpload:
        """Remember a staged-upload target handed out to `shop`; its body arrives later."""
        upload = StagedUpload(key=key, shop=shop, filename=filename, signature=signature)
        self.uploads[key] = upload
        return upload

    def add_shop(
        self,
        domain: str,
        access_token: str,
        webhook_secret: str,
        bucket_size: float,
        restore_rate: float,
        *,
        auto_create_customers: bool = False,
        bulk_mutation_limit: int = DEFAULT_BULK_MUTATION_LIMIT,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        iana_timezone: str = DEFAULT_TIMEZONE,
    ) -> Shop:
        """Register a shop; ValueError when the domain or the token is taken."""
        if domain in self.shops:
            raise ValueError(f"shop {domain} exists already")
        if access_token in self.by_token:
            raise ValueError("that access token belongs to another shop")
        shop = Shop(
            domain=domain,
            numeric_id=self.next_id(),
            access_token=access_token,
            webhook_secret=webhook_secret,
            bucket=LeakyBucket.full(bucket_size, restore_rate, time.monotonic()),
            auto_create_customers=auto_create_customers,
            bulk_mutation_limit=bulk_mutation_limit,
            scopes=scopes,
            iana_timezone=iana_timezone,
        )
        self.shops[domain] = shop
        self.by_token[access_token] = shop
        return shop
