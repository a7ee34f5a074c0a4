"""The stand-in's leaky bucket, on a clock the test drives."""

import pytest

from services.shopify_standin.bucket import LeakyBucket


def test_charges_restore_over_time_up_to_the_maximum() -> None:
    bucket = LeakyBucket.full(maximum=100, restore_rate=10, now=0.0)
    assert bucket.try_charge(60, now=0.0)
    assert bucket.level(0.0) == 40
    assert bucket.level(2.0) == 60  # 2 s x 10 points
    assert bucket.level(100.0) == 100


def test_a_charge_larger_than_the_level_takes_nothing() -> None:
    bucket = LeakyBucket.full(maximum=30, restore_rate=1, now=0.0)
    assert bucket.try_charge(25, now=0.0)
    assert not bucket.try_charge(10, now=1.0)
    assert bucket.level(1.0) == 6


def test_refunds_never_overfill() -> None:
    bucket = LeakyBucket.full(maximum=50, restore_rate=1, now=0.0)
    bucket.try_charge(10, now=0.0)
    bucket.refund(4, now=0.0)
    assert bucket.level(0.0) == 44
    bucket.refund(100, now=0.0)
    assert bucket.level(0.0) == 50


def test_a_bucket_needs_positive_figures() -> None:
    with pytest.raises(ValueError):
        LeakyBucket.full(maximum=0, restore_rate=1, now=0.0)
