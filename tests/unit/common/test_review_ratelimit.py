"""Review: each kind of key of a shop has its own buckets (the storefront's keys are public)."""

from services.common.ratelimit import READ, Rate, TokenBuckets
from tests.unit.common.test_ratelimit import Clock


def test_review_ratelimit_a_key_kind_spends_only_its_own_bucket() -> None:
    buckets = TokenBuckets({READ: Rate(1.0, 1)}, Clock())
    assert buckets.take(1, READ, "read") is None
    assert buckets.take(1, READ, "read") == 1
    assert buckets.take(1, READ, "admin") is None  # the admin token's bucket is full
    assert buckets.take(1, READ, "admin") == 1
