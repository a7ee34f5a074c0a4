"""The leaky bucket behind Shopify's calculated query costs, one per shop (and app)."""

from dataclasses import dataclass


@dataclass
class LeakyBucket:
    """Holds up to `maximum` points and regains `restore_rate` points a second; times are
    monotonic seconds passed in by the caller, so tests can drive the clock."""

    maximum: float
    restore_rate: float
    available: float
    updated_at: float

    @classmethod
    def full(cls, maximum: float, restore_rate: float, now: float) -> "LeakyBucket":
        """A bucket with every point available."""
        if maximum <= 0 or restore_rate <= 0:
            raise ValueError("a bucket needs a positive size and restore rate")
        return cls(maximum, restore_rate, maximum, now)

    def level(self, now: float) -> float:
        """The points available at `now` (what has leaked back since the last change included)."""
        if now > self.updated_at:
            restored = (now - self.updated_at) * self.restore_rate
            self.available = min(self.maximum, self.available + restored)
            self.updated_at = now
        return self.available

    def try_charge(self, cost: float, now: float) -> bool:
        """Take `cost` points if that many are available; False (and nothing taken) otherwise."""
        if self.level(now) < cost:
            return False
        self.available -= cost
        return True

    def refund(self, points: float, now: float) -> None:
        """Give back points charged up front but not used (requested minus actual cost)."""
        self.available = min(self.maximum, self.level(now) + max(points, 0.0))
