"""Which entrants a journey holds out: a stable draw from (journey id, customer id) alone.

Each pair maps to a 64-bit bucket by BLAKE2b keyed with a fixed constant (Python's hash() is
salted per process, and a segment or journey name would reshuffle on a rename). A customer is
held out when the bucket lies below share x 2^64, so the share is exact in expectation, the
draw is the same in every process and Python version, and raising the share only moves
treated customers into the holdout (lowering it only the reverse).
"""

import functools
import hashlib
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

# A fixed key: it separates these buckets from any other use of the same ids, and changing it
# would reassign every customer of every journey, so it never changes.
_KEY = b"segflow.journeys.holdout.v1"
_BUCKETS = 2**64
MAX_SHARE = Decimal("0.5")


class Group(StrEnum):
    """The arm of the experiment an enrolment is in."""

    TREATED = "treated"
    HOLDOUT = "holdout"


def bucket(journey_id: int, customer_id: int) -> int:
    """The pair's bucket, uniform over 0 .. 2^64 - 1."""
    message = f"{journey_id}:{customer_id}".encode("ascii")
    digest = hashlib.blake2b(message, digest_size=8, key=_KEY).digest()
    return int.from_bytes(digest, "big")


@functools.lru_cache(maxsize=1024)
def threshold(share: Decimal) -> int:
    """How many of the 2^64 buckets the holdout takes for this share (exact, no float)."""
    if not Decimal(0) <= share <= MAX_SHARE:
        raise ValueError(f"holdout share must be between 0 and {MAX_SHARE}, not {share}")
    return int(Fraction(share) * _BUCKETS)


def assign_group(journey_id: int, customer_id: int, share: Decimal) -> Group:
    """The group of this customer in this journey at this holdout share."""
    if bucket(journey_id, customer_id) < threshold(share):
        return Group.HOLDOUT
    return Group.TREATED
