"""Why a journey decision was made: stable strings, fit to store and to label metrics with."""

from enum import StrEnum


class ExitReason(StrEnum):
    """Why an enrolment stopped before its last step."""

    SEGMENT_EXITED = "segment_exited"
    ORDER_PLACED = "order_placed"
    UNSUBSCRIBED = "unsubscribed"
    REDACTED = "redacted"


class DeferReason(StrEnum):
    """Why a step waits; a deferred step is decided again at `until`, never dropped."""

    NOT_DUE = "not_due"
    QUIET_HOURS = "quiet_hours"
    FREQUENCY_CAP = "frequency_cap"
    JOURNEY_DISABLED = "journey_disabled"

    @property
    def counts_as_deferral(self) -> bool:
        """Whether the journey's stats count it as deferred: a step that was due and held back."""
        return self in (DeferReason.QUIET_HOURS, DeferReason.FREQUENCY_CAP)


class SkipReason(StrEnum):
    """Why a step was passed over (decided, not sent); the enrolment moves to the next step."""

    CONDITION_FALSE = "condition_false"
    NO_MARKETING_CONSENT = "no_marketing_consent"
    NO_EMAIL_ADDRESS = "no_email_address"
    BIRTHDAY_UNKNOWN = "birthday_unknown"
    STALE = "stale"


class IgnoreReason(StrEnum):
    """Why an event changed nothing."""

    OTHER_SEGMENT = "other_segment"
    ALREADY_SEEN = "already_seen"  # a duplicate, or older than a change already applied
    ALREADY_ENROLLED = "already_enrolled"
    NOT_ENROLLED = "not_enrolled"
    REENTRY_NEVER = "reentry_never"
    REENTRY_NOT_YET = "reentry_not_yet"
    BULK_CHANGE = "bulk_change"
    JOURNEY_DISABLED = "journey_disabled"
    EXIT_NOT_ENABLED = "exit_not_enabled"
    NOT_ACTIVE = "not_active"
    OUTSIDE_WINDOW = "outside_window"
