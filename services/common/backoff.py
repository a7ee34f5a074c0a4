"""Bounded exponential backoff with jitter, for retrying work while a dependency is down."""

import random

# 2**60 times any sensible initial delay is past every cap; beyond it floats would overflow.
_MAX_DOUBLINGS = 60


class Backoff:
    """Attempt n waits between half and all of min(maximum, initial · 2^(n-1)) seconds.

    The jitter spreads replicas that failed together, so they do not all retry at once; the
    lower half is kept so a retry never comes back immediately.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("need 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        """The longest wait before attempt `attempt` (1 is the first retry)."""
        doublings = min(max(attempt, 1) - 1, _MAX_DOUBLINGS)
        return min(self.maximum, self.initial * 2.0**doublings)

    def delay(self, attempt: int) -> float:
        """A jittered wait before attempt `attempt`, within [ceiling / 2, ceiling]."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)
