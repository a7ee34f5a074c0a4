"""What the step machine reads (an enrolment, a segment change, an order, the customer's
context at send time) and what it decides. Each decision carries the enrolment as it must be
written back: the caller stores that and acts on the decision, in one transaction."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from services.segmenter.domain.facts import CustomerFacts
from services.tagger.journeys.holdout import Group
from services.tagger.journeys.model import Step
from services.tagger.journeys.reasons import DeferReason, ExitReason, IgnoreReason, SkipReason
from services.tagger.journeys.timing import SendCap

# Segment changes caused by bulk work: they enrol only journeys with enrol_on_bulk, so an
# import or a segment's backfill does not mail thousands of existing customers at once.
BULK_CAUSES = frozenset({"import", "backfill"})


class EnrolmentStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"  # every step decided
    EXITED = "exited"  # stopped early: see exit_reason


@dataclass(frozen=True)
class Enrolment:
    """One customer's pass through one journey version (a re-entry is a new enrolment).

    `step_index` is the next step to decide; `last_step_at` when the previous one was decided
    (the anchor of "from previous" delays); `next_due_at` when the scheduler should call
    next_step again (None once the enrolment ended)."""

    journey_id: int
    journey_version: int
    customer_id: int
    group: Group
    entered_at: datetime
    entry_seq: int
    status: EnrolmentStatus = EnrolmentStatus.ACTIVE
    step_index: int = 0
    last_step_at: datetime | None = None
    next_due_at: datetime | None = None
    ended_at: datetime | None = None
    exit_reason: ExitReason | None = None

    @property
    def active(self) -> bool:
        return self.status is EnrolmentStatus.ACTIVE


@dataclass(frozen=True)
class SegmentChange:
    """One message of segflow.segment-changes, as far as journeys need it."""

    change_id: str
    seq: int
    customer_id: int
    segment_handle: str
    change: Literal["entered", "exited"]
    cause: str
    changed_at: datetime


@dataclass(frozen=True)
class OrderPlaced:
    """An order of the customer: its total in shop money and when it was placed."""

    order_id: int
    customer_id: int
    placed_at: datetime
    total: Decimal


@dataclass(frozen=True)
class CustomerContext:
    """The customer as of the moment next_step decides, loaded fresh for that call.

    facts: CustomerFacts derived as of now (the step's condition, the email address, the
      birthday month, the last order for the goal exit);
    email_consent: Shopify's email marketing state in lower case ("subscribed",
      "unsubscribed", "not_subscribed", "pending", …) or None, read at send time, including
      unsubscribes received through our own links;
    in_trigger_segment: whether the customer is in the journey's trigger segment now;
    zone: the customer's local zone (timing.customer_zone);
    recent_sends: when marketing emails were sent (or recorded to send) to this customer by
      any journey within cap.window before now; holdout suppressions are not sends;
    cap: the per-customer cap across journeys, or None for none.
    """

    facts: CustomerFacts
    email_consent: str | None
    in_trigger_segment: bool
    zone: ZoneInfo
    recent_sends: tuple[datetime, ...] = ()
    cap: SendCap | None = None


# --- decisions on events -----------------------------------------------------------------------


@dataclass(frozen=True)
class Enter:
    """Insert this new enrolment."""

    enrolment: Enrolment


@dataclass(frozen=True)
class Exit:
    """Write the ended enrolment back; nothing more will be sent from it."""

    enrolment: Enrolment
    reason: ExitReason


@dataclass(frozen=True)
class Ignore:
    """Nothing to write."""

    reason: IgnoreReason


@dataclass(frozen=True)
class ChangeOutcome:
    """The decision on a segment change and the newest change seq applied for this journey and
    customer (store it and pass it back next time; it makes duplicates and stale changes
    harmless even when no enrolment exists)."""

    decision: Enter | Exit | Ignore
    seen_seq: int | None


@dataclass(frozen=True)
class Conversion:
    """An order counted for the journey's lift (treated and holdout alike); store it keyed by
    (enrolment, order_id) so a replayed order counts once."""

    order_id: int
    customer_id: int
    journey_id: int
    group: Group
    placed_at: datetime
    revenue: Decimal


@dataclass(frozen=True)
class OrderOutcome:
    conversion: Conversion | None
    exit: Exit | None


# --- decisions of the scheduler ----------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    """Record the send (fixed Message-ID from the enrolment and step_index) and the advanced
    enrolment in one transaction, then hand the email to SMTP."""

    enrolment: Enrolment
    step_index: int
    step: Step


@dataclass(frozen=True)
class Suppress:
    """A holdout entrant's step: recorded exactly like a send, never sent."""

    enrolment: Enrolment
    step_index: int
    step: Step


@dataclass(frozen=True)
class Defer:
    """Nothing decided: call next_step again at `until` (the enrolment's new next_due_at)."""

    enrolment: Enrolment
    until: datetime
    reason: DeferReason


@dataclass(frozen=True)
class Skip:
    """The step is decided as not sent; the enrolment moves on to the next one."""

    enrolment: Enrolment
    step_index: int
    step: Step
    reason: SkipReason


@dataclass(frozen=True)
class Done:
    """Nothing left to do: the enrolment has ended (it is returned unchanged)."""

    enrolment: Enrolment


StepDecision = Send | Suppress | Defer | Skip | Exit | Done
