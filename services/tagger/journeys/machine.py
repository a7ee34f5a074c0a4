"""The step machine: pure functions from (journey, enrolment, event or context, now) to a
decision that says what to write back. No clock, no I/O: the caller passes `now`.

Contract for the caller (storage and the scheduler):
- Pass `journey` as the version the enrolment entered with (model.py's versioning), with the
  journey's current `enabled`; for a new entry, the current version.
- Apply a decision and write its enrolment in one transaction, under a lock on the enrolment
  row; each step is decided once because a decision advances `step_index` with it.
- Exits are re-checked at every step from the context too, so a segment exit, an order or an
  unsubscribe whose event is late or lost still ends the enrolment at its next step.
- Late steps (the service was down) are still sent once when the scheduler gets to them, unless
  the journey's `stale_after` bound is set and the step is later than that against the time it
  was planned for; quiet hours and the cap only defer.
"""

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from services.tagger.journeys.enrolment import (
    BULK_CAUSES,
    ChangeOutcome,
    Conversion,
    CustomerContext,
    Defer,
    Done,
    Enrolment,
    EnrolmentStatus,
    Enter,
    Exit,
    Ignore,
    OrderOutcome,
    OrderPlaced,
    SegmentChange,
    Send,
    Skip,
    StepDecision,
    Suppress,
)
from services.tagger.journeys.holdout import Group, assign_group
from services.tagger.journeys.model import Journey, ReentryPolicy, Step, TimingKind
from services.tagger.journeys.reasons import DeferReason, ExitReason, IgnoreReason, SkipReason
from services.tagger.journeys.timing import (
    in_month,
    month_start_from,
    quiet_hours_end,
    require_aware,
    send_time,
)

# A paused journey's enrolments are looked at again this often; nothing is dropped meanwhile.
PAUSED_RECHECK = timedelta(hours=1)


def on_segment_change(
    journey: Journey,
    enrolment: Enrolment | None,
    change: SegmentChange,
    now: datetime,
    seen_seq: int | None,
) -> ChangeOutcome:
    """Enter, exit or ignore on a change of the trigger segment. `enrolment` is the customer's
    latest enrolment in this journey (any status) or None; `seen_seq` the newest change seq
    applied for this journey and customer. A change at or below it is ignored."""
    require_aware(now, "now")
    require_aware(change.changed_at, "changed_at")
    if enrolment is not None and enrolment.customer_id != change.customer_id:
        raise ValueError("the change and the enrolment are of different customers")
    if change.segment_handle != journey.trigger_segment:
        return ChangeOutcome(Ignore(IgnoreReason.OTHER_SEGMENT), seen_seq)
    stale = (seen_seq is not None and change.seq <= seen_seq) or (
        enrolment is not None and change.seq <= enrolment.entry_seq
    )
    if stale:
        return ChangeOutcome(Ignore(IgnoreReason.ALREADY_SEEN), seen_seq)
    seen = change.seq
    at = min(change.changed_at, now)
    if change.change == "exited":
        return ChangeOutcome(_on_segment_exit(journey, enrolment, at), seen)
    return ChangeOutcome(_on_segment_entry(journey, enrolment, change, at), seen)


def _on_segment_exit(journey: Journey, enrolment: Enrolment | None, at: datetime) -> Exit | Ignore:
    if enrolment is None:
        return Ignore(IgnoreReason.NOT_ENROLLED)
    if not enrolment.active:
        return Ignore(IgnoreReason.NOT_ACTIVE)
    if not journey.exits.segment_exited:
        return Ignore(IgnoreReason.EXIT_NOT_ENABLED)
    return _exit(enrolment, ExitReason.SEGMENT_EXITED, at)


def _on_segment_entry(
    journey: Journey, enrolment: Enrolment | None, change: SegmentChange, at: datetime
) -> Enter | Ignore:
    if not journey.enabled:
        return Ignore(IgnoreReason.JOURNEY_DISABLED)
    if change.cause in BULK_CAUSES and not journey.enrol_on_bulk:
        return Ignore(IgnoreReason.BULK_CHANGE)
    if enrolment is not None:
        if enrolment.active:
            return Ignore(IgnoreReason.ALREADY_ENROLLED)
        policy = journey.reentry.policy
        if policy is ReentryPolicy.NEVER:
            return Ignore(IgnoreReason.REENTRY_NEVER)
        if policy is ReentryPolicy.AFTER_DAYS:
            days = journey.reentry.days or 0
            if at < enrolment.entered_at + timedelta(days=days):
                return Ignore(IgnoreReason.REENTRY_NOT_YET)
    entered = Enrolment(
        journey_id=journey.journey_id,
        journey_version=journey.version,
        customer_id=change.customer_id,
        group=assign_group(journey.journey_id, change.customer_id, journey.holdout_share),
        entered_at=at,
        entry_seq=change.seq,
    )
    return Enter(replace(entered, next_due_at=_earliest_due(journey, entered, at)))


def on_order(
    journey: Journey, enrolment: Enrolment, order: OrderPlaced, now: datetime
) -> OrderOutcome:
    """The conversion this order counts for (placed within the conversion window from entry,
    in either group, whatever the enrolment's status: intent-to-treat) and the goal exit it
    causes (an active enrolment, an order placed since entry, the exit switched on). Pass the
    enrolment the order belongs to: enrolment_for_order."""
    require_aware(now, "now")
    placed_at = require_aware(order.placed_at, "placed_at")
    if order.customer_id != enrolment.customer_id:
        raise ValueError("the order and the enrolment are of different customers")
    since_entry = placed_at >= enrolment.entered_at
    conversion = None
    if since_entry and placed_at <= enrolment.entered_at + journey.conversion_window:
        conversion = Conversion(
            order_id=order.order_id,
            customer_id=order.customer_id,
            journey_id=enrolment.journey_id,
            group=enrolment.group,
            placed_at=placed_at,
            revenue=order.total,
        )
    goal = None
    if since_entry and enrolment.active and journey.exits.order_placed:
        goal = _exit(enrolment, ExitReason.ORDER_PLACED, min(placed_at, now))
    return OrderOutcome(conversion, goal)


def enrolment_for_order(enrolments: Iterable[Enrolment], placed_at: datetime) -> Enrolment | None:
    """Of one customer's enrolments in one journey, the one an order placed then belongs to:
    the latest entered at or before it, so an order never counts for two entries."""
    earlier = [e for e in enrolments if e.entered_at <= placed_at]
    return max(earlier, key=lambda e: (e.entered_at, e.entry_seq), default=None)


def on_unsubscribe(journey: Journey, enrolment: Enrolment, now: datetime) -> Exit | Ignore:
    """The customer unsubscribed from marketing email (any source)."""
    require_aware(now, "now")
    if not enrolment.active:
        return Ignore(IgnoreReason.NOT_ACTIVE)
    if not journey.exits.unsubscribed:
        return Ignore(IgnoreReason.EXIT_NOT_ENABLED)
    return _exit(enrolment, ExitReason.UNSUBSCRIBED, now)


def on_redact(enrolment: Enrolment, now: datetime) -> Exit | Ignore:
    """customers/redact: the enrolment ends at once, whatever the journey says; the caller
    then erases the customer's journey data."""
    require_aware(now, "now")
    if not enrolment.active:
        return Ignore(IgnoreReason.NOT_ACTIVE)
    return _exit(enrolment, ExitReason.REDACTED, now)


def next_step(
    journey: Journey, enrolment: Enrolment, context: CustomerContext, now: datetime
) -> StepDecision:
    """What to do about the enrolment's next step now. Safe to call at any time: before the
    step is due it answers Defer(until=its due time)."""
    require_aware(now, "now")
    if (enrolment.journey_id, enrolment.journey_version) != (journey.journey_id, journey.version):
        raise ValueError("pass the journey version the enrolment entered with")
    if not enrolment.active:
        return Done(enrolment)
    exit_reason = _exit_from_context(journey, enrolment, context)
    if exit_reason is not None:
        return _exit(enrolment, exit_reason, now)
    if enrolment.step_index >= len(journey.steps):
        return Done(replace(enrolment, status=EnrolmentStatus.COMPLETED, next_due_at=None))
    if not journey.enabled:
        return _defer(enrolment, now + PAUSED_RECHECK, DeferReason.JOURNEY_DISABLED)
    step = journey.steps[enrolment.step_index]
    due = _due(step, enrolment, context, now)
    if due is None:
        return _skip(journey, enrolment, step, SkipReason.BIRTHDAY_UNKNOWN, context, now)
    if due > now:
        until = quiet_hours_end(due, context.zone, journey.quiet_hours)
        return _defer(enrolment, until, DeferReason.NOT_DUE)
    planned = max(due, enrolment.next_due_at or due)
    if journey.stale_after is not None and now - planned > journey.stale_after:
        return _skip(journey, enrolment, step, SkipReason.STALE, context, now)
    refusal = _refusal(step, context, now)
    if refusal is not None:
        return _skip(journey, enrolment, step, refusal, context, now)
    cap = context.cap if step.marketing else None
    at, reason = send_time(now, context.zone, journey.quiet_hours, cap, context.recent_sends)
    if reason is not None:
        if step.timing.kind is TimingKind.BIRTHDAY_MONTH:
            at = _within_birthday_month(at, context)
        return _defer(enrolment, at, reason)
    advanced = _advance(journey, enrolment, context, now)
    if enrolment.group is Group.HOLDOUT:
        return Suppress(advanced, enrolment.step_index, step)
    return Send(advanced, enrolment.step_index, step)


def _exit_from_context(
    journey: Journey, enrolment: Enrolment, context: CustomerContext
) -> ExitReason | None:
    if journey.exits.segment_exited and not context.in_trigger_segment:
        return ExitReason.SEGMENT_EXITED
    if journey.exits.unsubscribed and context.email_consent == "unsubscribed":
        return ExitReason.UNSUBSCRIBED
    last_order = context.facts.last_order_at
    if journey.exits.order_placed and last_order is not None and last_order >= enrolment.entered_at:
        return ExitReason.ORDER_PLACED
    return None


def _refusal(step: Step, context: CustomerContext, now: datetime) -> SkipReason | None:
    """Why the customer may not get this step now, if they may not."""
    if not context.facts.email:
        return SkipReason.NO_EMAIL_ADDRESS
    if step.marketing and context.email_consent != "subscribed":
        return SkipReason.NO_MARKETING_CONSENT
    if not step.condition_holds(context.facts, now):
        return SkipReason.CONDITION_FALSE
    return None


def _due(
    step: Step, enrolment: Enrolment, context: CustomerContext, now: datetime
) -> datetime | None:
    """When the step falls due before quiet hours and the cap; None when it never can (a
    birthday step for a customer whose birthday is unknown)."""
    previous = enrolment.last_step_at or enrolment.entered_at
    if step.timing.kind is TimingKind.AFTER_ENTRY:
        return enrolment.entered_at + step.timing.delay
    if step.timing.kind is TimingKind.AFTER_PREVIOUS:
        return previous + step.timing.delay
    month = context.facts.birthday_month
    if month is None:
        return None
    due = month_start_from(previous, month, context.zone)
    if due <= now and not in_month(now, month, context.zone):
        # The month went by unsent (the service was down, or deferrals ran past its end): a
        # birthday email goes only in the birthday month, so wait for the next one.
        due = month_start_from(now, month, context.zone)
    return due


def _within_birthday_month(at: datetime, context: CustomerContext) -> datetime:
    month = context.facts.birthday_month
    if month is None or in_month(at, month, context.zone):
        return at
    return month_start_from(at, month, context.zone)


def _earliest_due(journey: Journey, enrolment: Enrolment, now: datetime) -> datetime | None:
    """A lower bound of when the enrolment's next step falls due, for the scheduler's index:
    next_step answers Defer when it is not due yet. None when no step is left."""
    if enrolment.step_index >= len(journey.steps):
        return None
    step = journey.steps[enrolment.step_index]
    previous = enrolment.last_step_at or enrolment.entered_at
    if step.timing.kind is TimingKind.AFTER_ENTRY:
        return enrolment.entered_at + step.timing.delay
    if step.timing.kind is TimingKind.AFTER_PREVIOUS:
        return previous + step.timing.delay
    return now  # the birthday month needs the customer's facts: decided at the next call


def _advance(
    journey: Journey, enrolment: Enrolment, context: CustomerContext, now: datetime
) -> Enrolment:
    """The enrolment after its current step is decided (sent, suppressed or skipped)."""
    moved = replace(enrolment, step_index=enrolment.step_index + 1, last_step_at=now)
    if moved.step_index >= len(journey.steps):
        return replace(moved, status=EnrolmentStatus.COMPLETED, next_due_at=None, ended_at=now)
    earliest = _earliest_due(journey, moved, now)
    if earliest is not None and earliest > now:
        earliest = quiet_hours_end(earliest, context.zone, journey.quiet_hours)
    return replace(moved, next_due_at=earliest)


def _skip(
    journey: Journey,
    enrolment: Enrolment,
    step: Step,
    reason: SkipReason,
    context: CustomerContext,
    now: datetime,
) -> Skip:
    return Skip(_advance(journey, enrolment, context, now), enrolment.step_index, step, reason)


def _defer(enrolment: Enrolment, until: datetime, reason: DeferReason) -> Defer:
    return Defer(replace(enrolment, next_due_at=until), until, reason)


def _exit(enrolment: Enrolment, reason: ExitReason, at: datetime) -> Exit:
    ended = replace(
        enrolment,
        status=EnrolmentStatus.EXITED,
        next_due_at=None,
        ended_at=at,
        exit_reason=reason,
    )
    return Exit(ended, reason)
