"""Per-shop pacing from Shopify's own figures: a model of the shop's leaky bucket, updated
from every response's `extensions.cost.throttleStatus`, and a pacer that waits before sending
until the model holds the request's expected cost. No plan's figures are built in.

One pacer per shop: a shop waiting for its bucket never holds up another shop's requests.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BucketModel:
    """What we know of one shop's bucket; unknown until the first response reports it."""

    maximum: float | None = None
    restore_rate: float | None = None
    available: float = 0.0
    observed_at: float = 0.0

    @property
    def known(self) -> bool:
        return self.maximum is not None and self.restore_rate is not None

    def level(self, now: float) -> float:
        """The points the bucket should hold at `now`."""
        if self.maximum is None or self.restore_rate is None:
            return 0.0
        restored = max(now - self.observed_at, 0.0) * self.restore_rate
        return min(self.maximum, self.available + restored)

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until `cost` points are available (0 when they are, or nothing is known).
        A cost above the bucket's size waits for a full bucket, the most there can be."""
        if self.maximum is None or self.restore_rate is None:
            return 0.0
        deficit = min(cost, self.maximum) - self.level(now)
        return max(deficit, 0.0) / self.restore_rate

    def reserve(self, cost: float, now: float) -> None:
        """Count `cost` as spent by a request about to be sent."""
        self.available = self.level(now) - cost
        self.observed_at = now

    def observe(self, maximum: float, available: float, restore_rate: float, now: float) -> None:
        """Take the figures a response reported as the truth at `now`."""
        self.maximum, self.restore_rate = maximum, restore_rate
        self.available, self.observed_at = available, now


def throttle_status(body: Any) -> tuple[float, float, float, float | None] | None:
    """(maximumAvailable, currentlyAvailable, restoreRate, requestedQueryCost) from a response
    body's `extensions.cost`, or None when it carries none."""
    try:
        cost = body["extensions"]["cost"]
        status = cost["throttleStatus"]
        figures = (
            float(status["maximumAvailable"]),
            float(status["currentlyAvailable"]),
            float(status["restoreRate"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if figures[0] <= 0 or figures[2] <= 0:
        return None
    requested = cost.get("requestedQueryCost")
    return (*figures, float(requested) if isinstance(requested, int | float) else None)


@dataclass
class Pacer:
    """Waits before each request of one shop until its expected cost is available.

    Until the first response has shown the bucket, one request goes at a time (a probe);
    after that, requests in flight count against the model until they are answered, so
    concurrent callers of one shop never overdraw it.
    """

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    model: BucketModel = field(default_factory=BucketModel)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _in_flight: dict[int, float] = field(default_factory=dict)
    _probe: asyncio.Event | None = None
    _tickets: int = 0

    async def acquire(self, cost: float) -> tuple[int, float]:
        """Wait until `cost` points are free and reserve them; (ticket, seconds waited).
        Hand the ticket to `observe` and then `release`."""
        waited = 0.0
        async with self._lock:
            while not self.model.known and self._probe is not None:
                probe = self._probe
                self._lock.release()
                try:
                    await probe.wait()
                finally:
                    await self._lock.acquire()
            while True:
                now = self.clock()
                delay = self.model.wait_for(cost, now)
                if delay <= 0:
                    break
                await self.sleep(delay)
                waited += delay
            self._tickets += 1
            ticket = self._tickets
            if not self.model.known:
                self._probe = asyncio.Event()
            self.model.reserve(cost, now)
            self._in_flight[ticket] = cost
        return ticket, waited

    def observe(self, ticket: int, body: Any) -> float | None:
        """Update the model from a response body; the points it says are available, if any."""
        status = throttle_status(body)
        if status is None:
            return None
        maximum, available, rate, _ = status
        others = sum(cost for t, cost in self._in_flight.items() if t != ticket)
        # Requests still in flight may not be charged yet in these figures: count them spent.
        self.model.observe(maximum, available - others, rate, self.clock())
        return available

    def release(self, ticket: int) -> None:
        """The request of `ticket` is over (answered or failed)."""
        self._in_flight.pop(ticket, None)
        if self._probe is not None and (self.model.known or not self._in_flight):
            self._probe.set()
            self._probe = None


@dataclass
class PacerRegistry:
    """One pacer per shop domain, shared by every client of that shop in the process."""

    pacers: dict[str, Pacer] = field(default_factory=dict)

    def for_shop(self, domain: str) -> Pacer:
        """The shop's pacer, created on first use."""
        pacer = self.pacers.get(domain)
        if pacer is None:
            pacer = self.pacers[domain] = Pacer()
        return pacer
