"""Whose fault a failed batch is: the event's (dead-letter it) or a dependency's (retry it).

The line is drawn by SQLSTATE class rather than by a list of exception types, so an error
nobody has seen yet lands on the safe side: a database error outside the data classes below
stops the batch, uncommitted, and it is retried; it never sends good events to the dead letters.

Dead-lettered (the same event fails the same way every time):
- SQLSTATE class 22, data exception: a value the column cannot hold (out of range, a NUL byte
  in text, an impossible date), including asyncpg's own "invalid input for query argument";
- class 23, integrity constraint violation: a NOT NULL, CHECK or foreign key the event breaks;
- class 54, program limit exceeded: a value too large to store or index;
- any other Python exception, from our reducer or derivation code: one event's data hit a bug.

Retried (says nothing about the event): every other SQLSTATE class (08 connection, 40
serialization and deadlock, 53 resources such as disk full or too many connections, 55P03
lock not available, 57 operator intervention such as statement timeout or admin shutdown,
25006 read-only transaction after a failover, 42 a schema not migrated yet, 58 system, XX
internal), asyncpg's interface errors, OSError and TimeoutError, and every aiokafka error.
"""

from dataclasses import dataclass
from typing import Literal

import asyncpg
from aiokafka.errors import KafkaError

from services.segmenter.runtime.pipeline import StaleOwnershipError

Dependency = Literal["database", "broker"]

EVENT_DATA_CLASSES = frozenset({"22", "23", "54"})
# Exceptions are chained (`raise … from …`); a dependency failing anywhere in the chain counts.
_CHAIN_DEPTH = 5


@dataclass(frozen=True)
class Fault:
    """A dependency failing: the batch is retried, unchanged, until it works."""

    dependency: Dependency
    # A stable label for metrics: the exception's class name.
    reason: str
    # The SQLSTATE of a PostgreSQL error, else None.
    sqlstate: str | None
    detail: str

    def describe(self) -> dict[str, str | None]:
        """The fault as JSON for /readyz."""
        return {
            "dependency": self.dependency,
            "reason": self.reason,
            "sqlstate": self.sqlstate,
            "detail": self.detail[:500],
        }


def infrastructure_fault(exc: BaseException, default: Dependency = "database") -> Fault | None:
    """The dependency whose failure `exc` is, or None when the event itself is to blame.

    `default` names the dependency the failing code was talking to, for the errors that do not
    say (OSError, TimeoutError).
    """
    current: BaseException | None = exc
    for _ in range(_CHAIN_DEPTH):
        if current is None:
            break
        fault = _classify(current, default)
        if fault is not None:
            return fault
        current = current.__cause__
    return None


def _classify(exc: BaseException, default: Dependency) -> Fault | None:
    name = type(exc).__name__
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = str(exc.sqlstate or "")
        if sqlstate[:2] in EVENT_DATA_CLASSES:
            return None
        return Fault("database", name, sqlstate or None, str(exc))
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return Fault("database", name, None, str(exc))
    if isinstance(exc, StaleOwnershipError):
        # Another replica kept moving the batch's orders; a later attempt will find them still.
        return Fault("database", name, None, str(exc))
    if isinstance(exc, KafkaError):
        return Fault("broker", name, None, str(exc))
    if isinstance(exc, OSError | TimeoutError):
        return Fault(default, name, None, str(exc) or name)
    return None
