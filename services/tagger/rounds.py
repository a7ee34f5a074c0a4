"""The run loop the tagger's background tasks share: rounds until stopped, retried with the
health report when a dependency fails, at once again while there is work."""

import asyncio
from collections.abc import Awaitable, Callable

from services.segmenter.runtime.faults import infrastructure_fault
from services.segmenter.runtime.health import ComponentHealth


async def run_rounds(
    round_: Callable[[], Awaitable[bool]],
    stop: asyncio.Event,
    health: ComponentHealth,
    interval: float,
    wake: asyncio.Event | None = None,
) -> None:
    """Call `round_` until `stop` is set: again at once when it found work, else after
    `interval` or when `wake` is set. A failing database or broker shows as `retrying`; any
    other error is a bug and is raised."""
    health.running()
    failures = 0
    while not stop.is_set():
        try:
            busy = await round_()
        except Exception as exc:
            fault = infrastructure_fault(exc)
            if fault is None:
                raise
            failures += 1
            health.retrying(fault, failures)
            busy = False
        else:
            if failures:
                failures = 0
                health.running()
        if busy:
            continue
        if wake is not None:
            wake.clear()
        await _wait_either(stop, wake, interval)


async def _wait_either(first: asyncio.Event, second: asyncio.Event | None, timeout: float) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in (first, second) if e is not None]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
