"""Review: each kind of key of a shop has its own buckets (the storefront's keys are public),
and a shop's writes in flight are capped."""

import pytest
from prometheus_client import CollectorRegistry

from services.common.errors import ApiError
from services.common.ratelimit import READ, Rate, RateLimiter, TokenBuckets
from tests.unit.common.test_ratelimit import Clock


def test_review_ratelimit_a_key_kind_spends_only_its_own_bucket() -> None:
    buckets = TokenBuckets({READ: Rate(1.0, 1)}, Clock())
    assert buckets.take(1, READ, "read") is None
    assert buckets.take(1, READ, "read") == 1
    assert buckets.take(1, READ, "admin") is None  # the admin token's bucket is full
    assert buckets.take(1, READ, "admin") == 1


async def test_review_ratelimit_a_shops_write_slots_are_capped_and_freed_on_error() -> None:
    limiter = RateLimiter(TokenBuckets({}, Clock()), CollectorRegistry(), "t", writes_in_flight=1)
    async with limiter.write_slot(1):
        with pytest.raises(ApiError) as refused:
            async with limiter.write_slot(1):
                pass
        assert (refused.value.status, refused.value.headers) == (429, {"Retry-After": "1"})
        async with limiter.write_slot(2):  # another shop's slot
            pass
    with pytest.raises(RuntimeError):
        async with limiter.write_slot(1):
            raise RuntimeError("the write failed")
    async with limiter.write_slot(1):  # freed again
        pass
