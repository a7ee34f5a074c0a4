import random

import pytest

from services.common.backoff import Backoff


def test_delays_double_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    backoff = Backoff(0.5, 30.0, random.Random(7))
    ceilings = [backoff.ceiling(n) for n in range(1, 10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    for attempt in range(1, 200):
        delay = backoff.delay(attempt)
        assert backoff.ceiling(attempt) / 2 <= delay <= backoff.ceiling(attempt)


def test_the_jitter_spreads_replicas_and_a_seed_repeats_it() -> None:
    first = [Backoff(1, 60, random.Random(1)).delay(6) for _ in range(3)]
    assert len(set(first)) == 1
    spread = {Backoff(1, 60, random.Random(seed)).delay(6) for seed in range(20)}
    assert len(spread) == 20


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert Backoff(0.1, 5, random.Random(0)).ceiling(10**6) == 5


def test_nonsense_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(2, 1)
    with pytest.raises(ValueError):
        Backoff(0, 1)
