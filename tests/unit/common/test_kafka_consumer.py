import pytest
from pydantic import ValidationError

from services.common.kafka import make_consumer
from services.common.settings import Settings


async def test_a_slow_batch_in_a_rebalance_does_not_get_its_member_evicted() -> None:
    # The group waits `rebalance_timeout_ms` for a member finishing its batch; a batch may
    # take up to `max_poll_interval_ms`. aiokafka's own default is the session timeout (10 s).
    consumer = make_consumer("127.0.0.1:9", "group")
    try:
        assert consumer._rebalance_timeout_ms > consumer._max_poll_interval_ms
    finally:
        await consumer.stop()


async def test_the_rebalance_timeout_comes_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEGFLOW_CONSUMER_MAX_POLL_INTERVAL_MS", "60000")
    monkeypatch.setenv("SEGFLOW_CONSUMER_REBALANCE_TIMEOUT_MS", "90000")
    settings = Settings()
    consumer = make_consumer(
        "127.0.0.1:9",
        "group",
        max_poll_interval_ms=settings.consumer_max_poll_interval_ms,
        rebalance_timeout_ms=settings.consumer_rebalance_timeout_ms,
    )
    try:
        timeouts = (consumer._max_poll_interval_ms, consumer._rebalance_timeout_ms)
        assert timeouts == (60_000, 90_000)
    finally:
        await consumer.stop()


def test_defaults_leave_a_minute_between_the_longest_batch_and_eviction() -> None:
    settings = Settings()
    gap = settings.consumer_rebalance_timeout_ms - settings.consumer_max_poll_interval_ms
    assert gap >= 60_000


def test_a_rebalance_timeout_below_the_batch_bound_is_refused() -> None:
    with pytest.raises(ValidationError, match="rebalance_timeout"):
        Settings(consumer_rebalance_timeout_ms=10_000, consumer_max_poll_interval_ms=300_000)
    with pytest.raises(ValueError, match="rebalance_timeout"):
        make_consumer("127.0.0.1:9", "group", rebalance_timeout_ms=1_000)


async def test_a_caught_up_consumer_is_not_held_half_a_second_per_fetch() -> None:
    # Tansu answers a fetch that finds nothing only at its deadline, even when records arrive
    # meanwhile: the deadline bounds how long a new event waits to be fetched.
    consumer = make_consumer("127.0.0.1:9", "group")
    try:
        assert consumer._fetch_max_wait_ms <= 25
    finally:
        await consumer.stop()
