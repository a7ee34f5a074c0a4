"""The holdout draw: uniform, share-exact in expectation, stable, monotone in the share."""

import hashlib
import math
import os
import random
import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tagger.journeys.holdout import Group, assign_group, bucket, threshold

BUCKETS = 2**64
# The 99.9th percentile of chi-square with 19 degrees of freedom.
CHI2_19_999 = 43.82


def chi_square(buckets: list[int], bins: int) -> float:
    counts = [0] * bins
    for value in buckets:
        counts[value * bins // BUCKETS] += 1
    expected = len(buckets) / bins
    return sum((count - expected) ** 2 / expected for count in counts)


def test_buckets_are_uniform_for_random_ids() -> None:
    draw = random.Random(20240611)
    pairs = [(draw.randrange(1, 10**6), draw.randrange(1, 2**63)) for _ in range(20_000)]
    assert chi_square([bucket(j, c) for j, c in pairs], 20) < CHI2_19_999


def test_buckets_are_uniform_for_consecutive_ids() -> None:
    # Shopify customer ids of one store are close together; the draw must not care.
    first = 7_448_221_302_863
    values = [bucket(42, first + offset) for offset in range(20_000)]
    assert chi_square(values, 20) < CHI2_19_999
    # And across journeys for one customer.
    values = [bucket(journey, first) for journey in range(1, 20_001)]
    assert chi_square(values, 20) < CHI2_19_999


@pytest.mark.parametrize("share", ["0.1", "0.05", "0.5", "0.333"])
def test_the_holdout_takes_the_share_in_expectation(share: str) -> None:
    n = 20_000
    held = sum(assign_group(7, customer, Decimal(share)) is Group.HOLDOUT for customer in range(n))
    p = float(share)
    # Within 4 standard deviations of a binomial(n, p).
    assert abs(held - n * p) < 4 * math.sqrt(n * p * (1 - p))


def test_share_zero_holds_out_nobody() -> None:
    assert all(assign_group(1, c, Decimal(0)) is Group.TREATED for c in range(2_000))
    assert threshold(Decimal(0)) == 0
    assert threshold(Decimal("0.5")) == 2**63  # exact, no float rounding


def test_shares_outside_the_range_are_refused() -> None:
    for share in ("-0.01", "0.51", "1"):
        with pytest.raises(ValueError, match="between 0 and 0.5"):
            threshold(Decimal(share))


shares = st.decimals(min_value=0, max_value=Decimal("0.5"), places=4)


@settings(max_examples=100, derandomize=True, deadline=None)
@given(
    st.integers(min_value=1, max_value=2**63 - 1),
    st.integers(min_value=1, max_value=2**63 - 1),
    shares,
    shares,
)
def test_raising_the_share_only_moves_treated_customers_into_the_holdout(
    journey_id: int, customer_id: int, first: Decimal, second: Decimal
) -> None:
    low, high = sorted((first, second))
    if assign_group(journey_id, customer_id, low) is Group.HOLDOUT:
        assert assign_group(journey_id, customer_id, high) is Group.HOLDOUT


def test_changing_the_share_moves_only_the_customers_between_the_thresholds() -> None:
    customers = range(20_000)
    before = {c: assign_group(3, c, Decimal("0.1")) for c in customers}
    after = {c: assign_group(3, c, Decimal("0.2")) for c in customers}
    moved = [c for c in customers if before[c] != after[c]]
    assert all(before[c] is Group.TREATED and after[c] is Group.HOLDOUT for c in moved)
    # About a tenth of everyone moved: the fewest that a share change of 0.1 can move.
    assert abs(len(moved) - 2_000) < 4 * math.sqrt(20_000 * 0.1 * 0.9)


def test_the_draw_is_the_same_in_other_processes_and_hash_seeds() -> None:
    pairs = [(1, 1), (12, 820982911946154508), (99999, 7448221302863)]
    script = (
        "from services.tagger.journeys.holdout import bucket\n"
        f"print([bucket(j, c) for j, c in {pairs!r}])\n"
    )
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        outputs.add(result.stdout.strip())
    assert outputs == {str([bucket(j, c) for j, c in pairs])}


def test_the_draw_is_the_documented_keyed_hash_and_pinned() -> None:
    # Any change to the hash, key or message would reassign every running experiment's
    # customers: the values below were computed once and must never change.
    key = b"segflow.journeys.holdout.v1"
    digest = hashlib.blake2b(b"12:820982911946154508", digest_size=8, key=key).digest()
    assert bucket(12, 820982911946154508) == int.from_bytes(digest, "big")
    assert bucket(1, 1) == 3219107678562227085
    assert bucket(12, 820982911946154508) == 6152632657568826509
