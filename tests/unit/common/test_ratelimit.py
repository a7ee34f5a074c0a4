"""The per-shop token buckets, on a clock the test steps (no sleeps)."""

from prometheus_client import CollectorRegistry

from services.common.ratelimit import EVENTS, READ, WRITE, Rate, RateLimiter, TokenBuckets
from services.common.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_rate_refills_one_token_at_a_time() -> None:
    clock = Clock()
    buckets = TokenBuckets({READ: Rate(per_second=2.0, burst=3)}, clock)
    assert [buckets.take(1, READ) for _ in range(3)] == [None, None, None]
    assert buckets.take(1, READ) == 1  # half a second to the next token: at least 1 s
    clock.now += 0.5
    assert buckets.take(1, READ) is None
    assert buckets.take(1, READ) == 1
    clock.now += 100  # a long pause refills the burst, never more
    assert [buckets.take(1, READ) for _ in range(4)] == [None, None, None, 1]


def test_retry_after_is_whole_seconds_until_the_next_token() -> None:
    clock = Clock()
    buckets = TokenBuckets({WRITE: Rate(per_second=0.1, burst=1)}, clock)
    assert buckets.take(1, WRITE) is None
    assert buckets.take(1, WRITE) == 10
    clock.now += 2.5
    assert buckets.take(1, WRITE) == 8  # 7.5 s left, rounded up


def test_shops_and_classes_have_buckets_of_their_own() -> None:
    clock = Clock()
    rates = {READ: Rate(1.0, 1), WRITE: Rate(1.0, 1)}
    buckets = TokenBuckets(rates, clock)
    assert buckets.take(1, READ) is None
    assert buckets.take(1, READ) == 1
    assert buckets.take(2, READ) is None  # another shop
    assert buckets.take(1, WRITE) is None  # another class of the same shop


def test_a_zero_rate_or_an_unknown_class_is_not_limited() -> None:
    buckets = TokenBuckets({EVENTS: Rate(0.0, 1)}, Clock())
    assert all(buckets.take(1, EVENTS) is None for _ in range(1000))
    assert buckets.take(1, "other") is None


def test_a_clock_going_back_refills_nothing() -> None:
    clock = Clock()
    buckets = TokenBuckets({READ: Rate(1.0, 1)}, clock)
    assert buckets.take(1, READ) is None
    clock.now -= 50
    assert buckets.take(1, READ) == 1


def test_full_buckets_are_swept_so_memory_stays_bounded() -> None:
    clock = Clock()
    buckets = TokenBuckets({READ: Rate(1.0, 1)}, clock)
    for shop in range(TokenBuckets._SWEEP_ABOVE):
        buckets.take(shop, READ)
    clock.now += 10  # every bucket is full again: the same as none
    buckets.take(-1, READ)
    assert len(buckets._buckets) == 1


def test_the_limiter_classes_methods_refuses_with_429_and_counts() -> None:
    registry = CollectorRegistry()
    settings = Settings(rate_limit_write_per_second=1.0, rate_limit_write_burst=1)
    limiter = RateLimiter.from_settings(settings, registry, "api", clock=Clock())
    assert limiter.class_of("GET") == READ
    assert limiter.class_of("POST") == WRITE
    assert limiter.refusal(1, "POST") is None
    refusal = limiter.refusal(1, "PUT")
    assert refusal is not None
    assert (refusal.status, refusal.code, refusal.headers) == (
        429,
        "rate_limited",
        {"Retry-After": "1"},
    )
    assert (
        registry.get_sample_value("segflow_api_rate_limited_total", {"endpoint_class": WRITE})
        == 1.0
    )
    events = RateLimiter.from_settings(settings, CollectorRegistry(), "ingest", fixed_class=EVENTS)
    assert events.class_of("GET") == EVENTS
