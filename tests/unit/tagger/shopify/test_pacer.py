"""The client's model of a shop's bucket and the pacer built on it, on a driven clock."""

import asyncio

from services.tagger.shopify.pacer import BucketModel, Pacer, throttle_status


def status(maximum: float, available: float, rate: float, requested: int = 10) -> dict[str, object]:
    return {
        "extensions": {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": requested,
                "throttleStatus": {
                    "maximumAvailable": maximum,
                    "currentlyAvailable": available,
                    "restoreRate": rate,
                },
            }
        }
    }


def test_an_unknown_bucket_never_waits() -> None:
    model = BucketModel()
    assert not model.known and model.wait_for(500, now=0.0) == 0


def test_the_wait_is_the_deficit_over_the_restore_rate() -> None:
    model = BucketModel()
    model.observe(maximum=100, available=4, restore_rate=50, now=10.0)
    assert model.wait_for(10, now=10.0) == (10 - 4) / 50
    assert model.wait_for(10, now=10.2) == 0  # 4 + 0.2 x 50 = 14
    # More than the bucket holds: wait for a full bucket, never forever.
    assert model.wait_for(1000, now=10.0) == (100 - 4) / 50


def test_throttle_status_reads_shopifys_extension_and_ignores_its_absence() -> None:
    assert throttle_status(status(2000, 1990, 100)) == (2000.0, 1990.0, 100.0, 10.0)
    assert throttle_status({"data": {}}) is None
    assert throttle_status(status(0, 0, 0)) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_the_pacer_waits_for_what_the_last_response_reported() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    ticket, waited = await pacer.acquire(10)
    assert waited == 0  # the first request is the probe
    pacer.observe(ticket, status(maximum=30, available=5, rate=10))
    pacer.release(ticket)
    ticket, waited = await pacer.acquire(10)
    assert waited == 0.5 and clock.slept == [0.5]
    pacer.release(ticket)


async def test_requests_in_flight_count_against_the_model() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    probe, _ = await pacer.acquire(10)
    pacer.observe(probe, status(maximum=20, available=20, rate=10))
    pacer.release(probe)
    first, _ = await pacer.acquire(10)
    second, _ = await pacer.acquire(10)
    assert clock.slept == []  # 20 points: two requests fit
    # The first answers before the second is charged: the model still counts the second.
    pacer.observe(first, status(maximum=20, available=10, rate=10))
    pacer.release(first)
    _, waited = await pacer.acquire(10)
    assert waited == 1.0


async def test_until_the_bucket_is_known_one_request_goes_at_a_time() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    probe, _ = await pacer.acquire(10)
    second = asyncio.create_task(pacer.acquire(10))
    await asyncio.sleep(0)
    assert not second.done()
    pacer.observe(probe, status(maximum=100, available=90, rate=10))
    pacer.release(probe)
    ticket, waited = await asyncio.wait_for(second, 1)
    assert waited == 0
    pacer.release(ticket)
