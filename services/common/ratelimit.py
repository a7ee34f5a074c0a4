"""Per-shop rate limits: a token bucket per (shop, key kind, endpoint class), in this process.

The key kind is in it because the read and events keys sit on storefronts, where anyone can
copy them: a flood with one of those spends its own bucket, never the admin token's.

The buckets (TokenBuckets) are pure, on an injected clock, so tests step time instead of
sleeping; RateLimiter adds the 429 and its metric, enforce_rate_limit the FastAPI hook. Each
process keeps its own buckets, so N replicas let a shop through N times the rate (README,
"Limits").
"""

import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter

from services.common.errors import ApiError
from services.common.metrics import bounded_label
from services.common.settings import Settings
from services.common.shops import Shop

READ = "read"
WRITE = "write"
EVENTS = "events"
CLASSES = frozenset({READ, WRITE, EVENTS})

Clock = Callable[[], float]


@dataclass(frozen=True)
class Rate:
    """`per_second` tokens refill a bucket holding at most `burst`; 0 per second: unlimited."""

    per_second: float
    burst: int


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """Buckets per (shop, holder, class); `take` spends one token or says how long until one
    is there. The holder is the kind of key presented ("" when it does not matter)."""

    # Past this many buckets, full ones (the same as absent) are dropped; bounded by the
    # shops that authenticated, so this is only a guard.
    _SWEEP_ABOVE = 10_000

    def __init__(self, rates: dict[str, Rate], clock: Clock = time.monotonic) -> None:
        self._rates = rates
        self._clock = clock
        self._buckets: dict[tuple[int, str, str], _Bucket] = {}

    def take(self, shop_id: int, kind: str, holder: str = "") -> int | None:
        """None when the request may go; else the whole seconds (>= 1) until it may."""
        rate = self._rates.get(kind)
        if rate is None or rate.per_second <= 0:
            return None
        now = self._clock()
        key = (shop_id, holder, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._SWEEP_ABOVE:
                self._sweep(now)
            bucket = self._buckets[key] = _Bucket(float(rate.burst), now)
        else:
            # A clock that went back (it should not: monotonic) refills nothing.
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(rate.burst), bucket.tokens + elapsed * rate.per_second)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / rate.per_second))

    def _sweep(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            rate = self._rates[key[2]]
            if bucket.tokens + (now - bucket.at) * rate.per_second >= rate.burst:
                del self._buckets[key]


class RateLimiter:
    """The buckets of one app, the class of a request method, and the 429 with its metric;
    and the cap on one shop's writes in flight (`write_slot`)."""

    def __init__(
        self,
        buckets: TokenBuckets,
        registry: CollectorRegistry,
        service: str,
        fixed_class: str | None = None,
        writes_in_flight: int | None = None,
    ) -> None:
        self.buckets = buckets
        self._fixed_class = fixed_class
        self._writes_in_flight = writes_in_flight
        self._writing: dict[int, int] = {}
        self.limited = Counter(
            f"segflow_{service}_rate_limited",
            "Requests refused with 429 by the per-shop rate limit, by endpoint class",
            ["endpoint_class"],
            registry=registry,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        registry: CollectorRegistry,
        service: str,
        *,
        fixed_class: str | None = None,
        clock: Clock = time.monotonic,
    ) -> "RateLimiter":
        rates = {
            READ: Rate(settings.rate_limit_read_per_second, settings.rate_limit_read_burst),
            WRITE: Rate(settings.rate_limit_write_per_second, settings.rate_limit_write_burst),
            EVENTS: Rate(settings.rate_limit_events_per_second, settings.rate_limit_events_burst),
        }
        return cls(
            TokenBuckets(rates, clock),
            registry,
            service,
            fixed_class,
            settings.api_writes_in_flight_per_shop,
        )

    def class_of(self, method: str) -> str:
        """The endpoint class: the app's fixed one, else reads (GET, HEAD) and writes."""
        if self._fixed_class is not None:
            return self._fixed_class
        return READ if method in ("GET", "HEAD", "OPTIONS") else WRITE

    def refusal(self, shop_id: int, method: str, holder: str = "") -> ApiError | None:
        """The 429 to answer, or None when the bucket of the shop's key kind (`holder`) has a
        token for this request."""
        kind = self.class_of(method)
        wait = self.buckets.take(shop_id, kind, holder)
        if wait is None:
            return None
        self.limited.labels(bounded_label(kind, CLASSES)).inc()
        return ApiError(
            429,
            "rate_limited",
            f"too many {kind} requests for this shop; retry after {wait} s",
            headers={"Retry-After": str(wait)},
        )

    @asynccontextmanager
    async def write_slot(self, shop_id: int) -> AsyncIterator[None]:
        """Hold one of the shop's write slots for the block, or raise the 429 when all are taken.

        A segment write keeps a database connection for its whole backfill (seconds on a large
        shop): without a cap, one shop's burst of them took every connection of the pool and
        every other shop waited. The bucket bounds the rate; this bounds the connections.
        """
        held = self._writing.get(shop_id, 0)
        if self._writes_in_flight is not None and held >= self._writes_in_flight:
            self.limited.labels(WRITE).inc()
            raise ApiError(
                429,
                "rate_limited",
                f"this shop has {held} write requests in flight already; retry after 1 s",
                headers={"Retry-After": "1"},
            )
        self._writing[shop_id] = held + 1
        try:
            yield
        finally:
            left = self._writing[shop_id] - 1
            if left:
                self._writing[shop_id] = left
            else:
                del self._writing[shop_id]


def enforce_rate_limit(request: Request, shop: Shop, holder: str = "") -> None:
    """Raise the 429 when the app has a limiter (`app.state.rate_limiter`) and the bucket of
    the shop's key kind (`holder`) is empty."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    refusal = limiter.refusal(shop.id, request.method, holder)
    if refusal is not None:
        raise refusal
