"""Which failures dead-letter the event and which stop the batch to retry it."""

import asyncpg
import pytest
from aiokafka import errors as kafka
from pydantic import BaseModel, ValidationError

from services.segmenter.runtime.faults import infrastructure_fault
from services.segmenter.runtime.pipeline import StaleOwnershipError

pg = asyncpg.exceptions

# The event's own data: the same event fails the same way every time.
EVENT_FAULTS = [
    pg.DataError("invalid input for query argument $1: 18446744073709551616"),
    pg.NumericValueOutOfRangeError("integer out of range"),
    pg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
    pg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
    pg.InvalidDatetimeFormatError("invalid input syntax for type timestamp"),
    pg.ForeignKeyViolationError("violates foreign key constraint"),
    pg.NotNullViolationError("null value in column"),
    pg.CheckViolationError("violates check constraint"),
    pg.UniqueViolationError("duplicate key value"),
    pg.ProgramLimitExceededError("index row size exceeds btree maximum"),
    OverflowError("date value out of range"),
    ValueError("a reducer bug met by one event"),
    KeyError("missing"),
    ZeroDivisionError(),
]

# A dependency failing, whatever the event: (error, the dependency /readyz names).
DEPENDENCY_FAULTS = [
    (pg.QueryCanceledError("canceling statement due to statement timeout"), "database"),
    (pg.LockNotAvailableError("canceling statement due to lock timeout"), "database"),
    (pg.TooManyConnectionsError("sorry, too many clients already"), "database"),
    (
        pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        "database",
    ),
    (pg.AdminShutdownError("terminating connection due to administrator command"), "database"),
    (pg.CannotConnectNowError("the database system is starting up"), "database"),
    (pg.DiskFullError("could not extend file"), "database"),
    (pg.OutOfMemoryError("out of memory"), "database"),
    (pg.DeadlockDetectedError("deadlock detected"), "database"),
    (pg.SerializationError("could not serialize access"), "database"),
    (
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        "database",
    ),
    (pg.UndefinedTableError('relation "customers" does not exist'), "database"),
    (pg.InsufficientPrivilegeError("permission denied for table customers"), "database"),
    (pg.InternalServerError("internal error"), "database"),
    (pg.DataCorruptedError("invalid page in block"), "database"),
    (pg.PostgresIOError("could not read block"), "database"),
    (asyncpg.InterfaceError("connection is closed"), "database"),
    (asyncpg.InternalClientError("unexpected state"), "database"),
    (StaleOwnershipError("an order changed hands"), "database"),
    (ConnectionRefusedError(111, "Connection refused"), "database"),
    (FileNotFoundError(2, "No such file or directory: '/tmp/.s.PGSQL.5432'"), "database"),
    (TimeoutError(), "database"),
    (kafka.KafkaConnectionError("Unable to bootstrap"), "broker"),
    (kafka.KafkaTimeoutError(), "broker"),
    (kafka.RequestTimedOutError(), "broker"),
    (kafka.NotLeaderForPartitionError(), "broker"),
]


@pytest.mark.parametrize("error", EVENT_FAULTS, ids=lambda e: type(e).__name__)
def test_the_events_own_data_errors_are_dead_lettered(error: BaseException) -> None:
    assert infrastructure_fault(error) is None


@pytest.mark.parametrize(("error", "dependency"), DEPENDENCY_FAULTS, ids=lambda e: type(e).__name__)
def test_dependency_failures_stop_the_batch(error: BaseException, dependency: str) -> None:
    fault = infrastructure_fault(error)
    assert fault is not None
    assert fault.dependency == dependency
    assert fault.reason == type(error).__name__


def test_the_decision_is_by_sqlstate_class_so_unlisted_errors_are_retried() -> None:
    # Every PostgreSQL error class asyncpg knows: only 22, 23 and 54 blame the event.
    classes = [pg.PostgresError]
    found = []
    while classes:
        current = classes.pop()
        classes.extend(current.__subclasses__())
        found.append(current)
    for cls in found:
        sqlstate = getattr(cls, "sqlstate", None)
        if not sqlstate:
            continue
        blamed_on_event = infrastructure_fault(cls("x")) is None
        assert blamed_on_event == (sqlstate[:2] in {"22", "23", "54"}), (cls, sqlstate)


def test_the_sqlstate_is_reported() -> None:
    fault = infrastructure_fault(pg.QueryCanceledError("canceling statement"))
    assert fault is not None
    assert fault.describe() == {
        "dependency": "database",
        "reason": "QueryCanceledError",
        "sqlstate": "57014",
        "detail": "canceling statement",
    }


def test_errors_say_which_dependency_only_when_they_can() -> None:
    # OSError and TimeoutError name no dependency; the caller says what it was talking to.
    assert infrastructure_fault(OSError("reset"), "broker").dependency == "broker"  # type: ignore[union-attr]
    assert infrastructure_fault(kafka.KafkaTimeoutError(), "database").dependency == "broker"  # type: ignore[union-attr]


def test_a_dependency_failure_behind_another_error_still_counts() -> None:
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError as cause:
            raise RuntimeError("while saving the batch") from cause
    except RuntimeError as wrapped:
        assert infrastructure_fault(wrapped) is not None


def test_a_validation_error_of_our_own_models_blames_the_event() -> None:
    class Money(BaseModel):
        amount: int

    with pytest.raises(ValidationError) as raised:
        Money.model_validate({"amount": "lots"})
    assert infrastructure_fault(raised.value) is None
