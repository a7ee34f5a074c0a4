"""The step machine, path by path: entry, steps, deferrals, skips, exits, orders, re-entry."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.tagger.journeys.enrolment import (
    Defer,
    Done,
    Enrolment,
    EnrolmentStatus,
    Enter,
    Exit,
    Ignore,
    OrderPlaced,
    Send,
    Skip,
    Suppress,
)
from services.tagger.journeys.holdout import Group
from services.tagger.journeys.machine import (
    PAUSED_RECHECK,
    enrolment_for_order,
    next_step,
    on_order,
    on_redact,
    on_segment_change,
    on_unsubscribe,
)
from services.tagger.journeys.model import Journey
from services.tagger.journeys.reasons import DeferReason, ExitReason, IgnoreReason, SkipReason
from tests.unit.tagger.journeys.journeys_helpers import (
    T0,
    change,
    context,
    customer_in,
    shipped,
)


def enter(journey: Journey, customer_id: int = 1, at: datetime = T0, seq: int = 1) -> Enrolment:
    outcome = on_segment_change(
        journey,
        None,
        change(seq, at=at, customer_id=customer_id, segment=journey.trigger_segment),
        at,
        None,
    )
    assert isinstance(outcome.decision, Enter)
    return outcome.decision.enrolment


def test_an_entry_enrols_and_schedules_the_first_step() -> None:
    welcome = shipped("welcome")
    outcome = on_segment_change(welcome, None, change(7), T0 + timedelta(seconds=2), None)
    assert isinstance(outcome.decision, Enter)
    enrolment = outcome.decision.enrolment
    assert outcome.seen_seq == 7
    assert (enrolment.journey_id, enrolment.journey_version, enrolment.customer_id) == (11, 1, 1)
    assert enrolment.group is Group.TREATED  # holdout share 0 in these tests
    assert enrolment.entered_at == T0  # when the customer entered the segment
    assert enrolment.next_due_at == T0 + timedelta(hours=1)
    assert (enrolment.status, enrolment.step_index, enrolment.entry_seq) == (
        EnrolmentStatus.ACTIVE,
        0,
        7,
    )


def test_the_welcome_series_runs_step_by_step() -> None:
    welcome = shipped("welcome")
    enrolment = enter(welcome)
    early = next_step(welcome, enrolment, context(), T0 + timedelta(minutes=30))
    assert isinstance(early, Defer)
    assert (early.reason, early.until) == (DeferReason.NOT_DUE, T0 + timedelta(hours=1))
    sent_keys = []
    now = T0
    for _ in range(10):
        assert enrolment.next_due_at is not None
        now = max(now, enrolment.next_due_at)
        decision = next_step(welcome, enrolment, context(), now)
        assert isinstance(decision, Send | Defer), decision
        if isinstance(decision, Send):
            sent_keys.append(decision.step.key)
            assert decision.step_index == enrolment.step_index
        enrolment = decision.enrolment
        if not enrolment.active:
            break
    assert sent_keys == ["welcome", "product-intro", "first-order-coupon", "guide"]
    assert enrolment.status is EnrolmentStatus.COMPLETED
    assert enrolment.next_due_at is None
    assert isinstance(next_step(welcome, enrolment, context(), now), Done)


def test_quiet_hours_defer_a_step_to_the_local_morning() -> None:
    welcome = shipped("welcome")
    # Registered 20:30 in New York: the 1-hour welcome falls at 21:30, inside quiet hours.
    evening = datetime(2025, 3, 4, 1, 30, tzinfo=UTC)
    enrolment = enter(welcome, at=evening)
    morning = datetime(2025, 3, 4, 14, tzinfo=UTC)  # 09:00 EST
    waiting = next_step(welcome, enrolment, context(), evening + timedelta(minutes=5))
    assert isinstance(waiting, Defer)
    assert (waiting.reason, waiting.until) == (DeferReason.NOT_DUE, morning)
    # Called at the due time anyway (an index that ignored the quiet hours): still deferred.
    quiet = next_step(welcome, enrolment, context(), evening + timedelta(hours=1))
    assert isinstance(quiet, Defer)
    assert (quiet.reason, quiet.until) == (DeferReason.QUIET_HOURS, morning)
    assert quiet.enrolment.next_due_at == morning
    sent = next_step(welcome, quiet.enrolment, context(), morning)
    assert isinstance(sent, Send)


def test_the_cap_defers_a_marketing_step_and_never_drops_it() -> None:
    welcome = shipped("welcome")
    enrolment = enter(welcome)
    due = T0 + timedelta(hours=1)
    busy = context(recent_sends=(T0 - timedelta(hours=20), T0 - timedelta(minutes=10)))
    capped = next_step(welcome, enrolment, busy, due)
    assert isinstance(capped, Defer)
    assert capped.reason is DeferReason.FREQUENCY_CAP
    assert capped.until == T0 + timedelta(hours=4)  # the older send leaves the 24 h window
    assert capped.reason.counts_as_deferral
    sent = next_step(welcome, capped.enrolment, busy, capped.until)
    assert isinstance(sent, Send)
    assert sent.step.key == "welcome"


def test_the_cap_leaves_transactional_steps_alone() -> None:
    welcome = shipped("welcome")
    steps = [{**step, "marketing": False} for step in _steps_json(welcome)]
    notice = shipped("welcome", steps=steps)
    busy = context(recent_sends=(T0, T0), email_consent="not_subscribed")
    sent = next_step(notice, enter(notice), busy, T0 + timedelta(hours=1))
    assert isinstance(sent, Send)  # no consent needed, no cap


def test_holdout_entrants_advance_the_same_but_are_suppressed() -> None:
    share = Decimal("0.5")
    welcome = shipped("welcome", holdout_share=share)
    held = customer_in(Group.HOLDOUT, share)
    treated = customer_in(Group.TREATED, share)
    held_enrolment = enter(welcome, customer_id=held)
    treated_enrolment = enter(welcome, customer_id=treated)
    assert held_enrolment.group is Group.HOLDOUT
    due = T0 + timedelta(hours=1)
    suppressed = next_step(welcome, held_enrolment, context(held), due)
    sent = next_step(welcome, treated_enrolment, context(treated), due)
    assert isinstance(suppressed, Suppress) and isinstance(sent, Send)
    assert suppressed.step == sent.step
    assert replace(suppressed.enrolment, customer_id=0, group=Group.TREATED) == replace(
        sent.enrolment, customer_id=0
    )
    # Quiet hours and the cap hold the holdout back exactly as they would a send.
    night = datetime(2025, 3, 4, 4, tzinfo=UTC)
    assert isinstance(next_step(welcome, held_enrolment, context(held), night), Defer)


def test_a_rename_reshuffles_nobody() -> None:
    share = Decimal("0.5")
    held = customer_in(Group.HOLDOUT, share)
    original = shipped("welcome", holdout_share=share)
    renamed = shipped("welcome", holdout_share=share, name="Hello there", handle="hello")
    assert enter(original, customer_id=held).group is enter(renamed, customer_id=held).group


def test_consent_and_address_are_rechecked_at_send_time() -> None:
    welcome = shipped("welcome")
    enrolment = enter(welcome)
    due = T0 + timedelta(hours=1)
    pending = next_step(welcome, enrolment, context(email_consent="pending"), due)
    assert isinstance(pending, Skip)
    assert pending.reason is SkipReason.NO_MARKETING_CONSENT
    assert pending.enrolment.step_index == 1  # decided: the journey goes on
    no_address = next_step(welcome, enrolment, context(facts={"email": None}), due)
    assert isinstance(no_address, Skip)
    assert no_address.reason is SkipReason.NO_EMAIL_ADDRESS


def test_an_unsubscribed_customer_leaves_at_the_next_step() -> None:
    welcome = shipped("welcome")
    gone = next_step(welcome, enter(welcome), context(email_consent="unsubscribed"), T0)
    assert isinstance(gone, Exit)
    assert gone.reason is ExitReason.UNSUBSCRIBED
    assert gone.enrolment.status is EnrolmentStatus.EXITED
    assert gone.enrolment.next_due_at is None
    # With the unsubscribe exit off, marketing steps are skipped instead.
    staying = shipped("welcome", exits={"unsubscribed": False})
    skipped = next_step(
        staying, enter(staying), context(email_consent="unsubscribed"), T0 + timedelta(hours=1)
    )
    assert isinstance(skipped, Skip)


def test_the_step_condition_is_rechecked_before_the_send() -> None:
    welcome = shipped("welcome", exits={"order_placed": False})
    enrolment = replace(enter(welcome), step_index=2)  # the first-order coupon
    day_7 = T0 + timedelta(days=7)
    skipped = next_step(welcome, enrolment, context(facts={"orders_count": 1}), day_7)
    assert isinstance(skipped, Skip)
    assert skipped.reason is SkipReason.CONDITION_FALSE
    assert skipped.enrolment.step_index == 3
    assert skipped.enrolment.next_due_at == T0 + timedelta(days=14)
    assert isinstance(next_step(welcome, enrolment, context(), day_7), Send)


def test_leaving_the_segment_exits_at_the_next_step_even_without_the_event() -> None:
    welcome = shipped("welcome")
    decision = next_step(
        welcome, enter(welcome), context(in_trigger_segment=False), T0 + timedelta(hours=1)
    )
    assert isinstance(decision, Exit)
    assert decision.reason is ExitReason.SEGMENT_EXITED


def test_an_order_seen_in_the_facts_exits_at_the_next_step() -> None:
    welcome = shipped("welcome")
    ordered = context(facts={"last_order_at": T0 + timedelta(minutes=20), "orders_count": 1})
    decision = next_step(welcome, enter(welcome), ordered, T0 + timedelta(hours=1))
    assert isinstance(decision, Exit)
    assert decision.reason is ExitReason.ORDER_PLACED
    # An order from before the entry is not the goal.
    earlier = context(facts={"last_order_at": T0 - timedelta(days=1), "orders_count": 1})
    assert isinstance(next_step(welcome, enter(welcome), earlier, T0 + timedelta(hours=1)), Send)


def test_segment_changes_in_order_duplicates_and_stale_ones() -> None:
    welcome = shipped("welcome", reentry={"policy": "after_exit"})
    entered = on_segment_change(welcome, None, change(5), T0, None)
    assert isinstance(entered.decision, Enter)
    enrolment = entered.decision.enrolment
    duplicate = on_segment_change(welcome, enrolment, change(5), T0, entered.seen_seq)
    assert duplicate.decision == Ignore(IgnoreReason.ALREADY_SEEN)
    assert duplicate.seen_seq == 5
    later = T0 + timedelta(hours=2)
    exited = on_segment_change(welcome, enrolment, change(9, "exited", later), later, 5)
    assert isinstance(exited.decision, Exit)
    assert exited.decision.reason is ExitReason.SEGMENT_EXITED
    assert exited.decision.enrolment.ended_at == later
    ended = exited.decision.enrolment
    # A replayed older entry after the exit changes nothing, even though re-entry is allowed.
    replayed = on_segment_change(welcome, ended, change(5), later, exited.seen_seq)
    assert replayed.decision == Ignore(IgnoreReason.ALREADY_SEEN)
    # A newer entry re-enters.
    again = on_segment_change(welcome, ended, change(12, at=later), later, 9)
    assert isinstance(again.decision, Enter)
    assert again.decision.enrolment.entry_seq == 12


def test_an_exit_seen_before_any_entry_still_guards_against_an_older_entry() -> None:
    welcome = shipped("welcome")
    exited = on_segment_change(welcome, None, change(9, "exited"), T0, None)
    assert exited.decision == Ignore(IgnoreReason.NOT_ENROLLED)
    assert exited.seen_seq == 9
    late_entry = on_segment_change(welcome, None, change(4), T0, exited.seen_seq)
    assert late_entry.decision == Ignore(IgnoreReason.ALREADY_SEEN)


def test_changes_of_other_segments_are_not_this_journeys() -> None:
    welcome = shipped("welcome")
    outcome = on_segment_change(welcome, None, change(3, segment="vip"), T0, 2)
    assert outcome.decision == Ignore(IgnoreReason.OTHER_SEGMENT)
    assert outcome.seen_seq == 2


@pytest.mark.parametrize(
    ("reentry", "after", "expected"),
    [
        ({"policy": "never"}, timedelta(days=400), IgnoreReason.REENTRY_NEVER),
        ({"policy": "after_days", "days": 30}, timedelta(days=29), IgnoreReason.REENTRY_NOT_YET),
        ({"policy": "after_days", "days": 30}, timedelta(days=30), None),
        ({"policy": "after_exit"}, timedelta(minutes=1), None),
    ],
)
def test_reentry_policies(
    reentry: dict[str, object], after: timedelta, expected: IgnoreReason | None
) -> None:
    welcome = shipped("welcome", reentry=reentry)
    first = enter(welcome)
    ended = on_segment_change(welcome, first, change(2, "exited", T0), T0, 1).decision
    assert isinstance(ended, Exit)
    back = T0 + after
    outcome = on_segment_change(welcome, ended.enrolment, change(3, at=back), back, 2)
    if expected is None:
        assert isinstance(outcome.decision, Enter)
    else:
        assert outcome.decision == Ignore(expected)


def test_an_active_enrolment_is_never_doubled() -> None:
    welcome = shipped("welcome", reentry={"policy": "after_exit"})
    first = enter(welcome)
    outcome = on_segment_change(welcome, first, change(2), T0, 1)
    assert outcome.decision == Ignore(IgnoreReason.ALREADY_ENROLLED)


def test_bulk_changes_enrol_only_when_the_journey_says_so() -> None:
    welcome = shipped("welcome")
    for cause in ("import", "backfill"):
        outcome = on_segment_change(welcome, None, change(1, cause=cause), T0, None)
        assert outcome.decision == Ignore(IgnoreReason.BULK_CHANGE)
    eager = shipped("welcome", enrol_on_bulk=True)
    assert isinstance(
        on_segment_change(eager, None, change(1, cause="import"), T0, None).decision, Enter
    )
    assert isinstance(
        on_segment_change(welcome, None, change(1, cause="schedule"), T0, None).decision, Enter
    )


def test_a_paused_journey_enrols_nobody_and_holds_its_steps() -> None:
    welcome = shipped("welcome")
    enrolment = enter(welcome)
    paused = replace(welcome, enabled=False)
    assert on_segment_change(paused, None, change(8, customer_id=2), T0, None).decision == Ignore(
        IgnoreReason.JOURNEY_DISABLED
    )
    now = T0 + timedelta(hours=1)
    held = next_step(paused, enrolment, context(), now)
    assert isinstance(held, Defer)
    assert (held.reason, held.until) == (DeferReason.JOURNEY_DISABLED, now + PAUSED_RECHECK)
    assert not held.reason.counts_as_deferral
    assert isinstance(next_step(welcome, held.enrolment, context(), held.until), Send)


def test_a_late_step_is_sent_once_unless_the_journey_bounds_staleness() -> None:
    welcome = shipped("welcome")
    enrolment = enter(welcome)
    two_days_late = T0 + timedelta(hours=1, days=2)
    late = next_step(welcome, enrolment, context(), two_days_late)
    assert isinstance(late, Send)
    assert late.step.key == "welcome"
    # Once sent, the next step is the day-3 one: the late welcome is not sent twice.
    assert late.enrolment.step_index == 1
    bounded = shipped("welcome", stale_after="P1D")
    stale = next_step(bounded, enter(bounded), context(), two_days_late)
    assert isinstance(stale, Skip)
    assert stale.reason is SkipReason.STALE
    # Deferral by quiet hours is not lateness: planned for 09:00, sent at 09:00.
    planned = replace(enter(bounded), next_due_at=T0 + timedelta(days=1, hours=2))
    assert isinstance(next_step(bounded, planned, context(), T0 + timedelta(days=1, hours=2)), Send)


def test_vip_care_offers_at_entry_then_waits_for_the_birthday_month() -> None:
    vip = shipped("vip-care")
    enrolment = enter(vip)  # 2025-03-03
    assert enrolment.next_due_at == T0
    november = context(facts={"birthday_month": 11})
    offer = next_step(vip, enrolment, november, T0)
    assert isinstance(offer, Send)
    assert offer.step.key == "exclusive-offer"
    wait = next_step(vip, offer.enrolment, november, T0 + timedelta(minutes=1))
    assert isinstance(wait, Defer)
    # November 1st 00:00 in New York is quiet: 09:00 EDT, 13:00 UTC.
    assert wait.until == datetime(2025, 11, 1, 13, tzinfo=UTC)
    birthday = next_step(vip, wait.enrolment, november, wait.until)
    assert isinstance(birthday, Send)
    assert birthday.step.key == "birthday-offer"
    assert birthday.enrolment.status is EnrolmentStatus.COMPLETED


def test_a_birthday_month_missed_waits_a_year_and_an_unknown_birthday_skips() -> None:
    vip = shipped("vip-care")
    after_offer = replace(enter(vip), step_index=1, last_step_at=T0)
    march = context(facts={"birthday_month": 3})
    # The scheduler was down from March 3rd to April 2nd: no birthday email in April.
    april = datetime(2025, 4, 2, 15, tzinfo=UTC)
    missed = next_step(vip, after_offer, march, april)
    assert isinstance(missed, Defer)
    assert missed.until == datetime(2026, 3, 1, 14, tzinfo=UTC)  # 09:00 EST next March
    unknown = next_step(vip, after_offer, context(), T0)
    assert isinstance(unknown, Skip)
    assert unknown.reason is SkipReason.BIRTHDAY_UNKNOWN
    assert unknown.enrolment.status is EnrolmentStatus.COMPLETED


def test_orders_count_as_conversions_within_the_window_for_both_groups() -> None:
    share = Decimal("0.5")
    welcome = shipped("welcome", holdout_share=share)
    held = customer_in(Group.HOLDOUT, share)
    enrolment = enter(welcome, customer_id=held)
    order = OrderPlaced(
        order_id=820982911946154508,
        customer_id=held,
        placed_at=T0 + timedelta(days=2),
        total=Decimal("59.90"),
    )
    outcome = on_order(welcome, enrolment, order, T0 + timedelta(days=2))
    assert outcome.conversion is not None
    assert (outcome.conversion.group, outcome.conversion.revenue) == (
        Group.HOLDOUT,
        Decimal("59.90"),
    )
    assert outcome.exit is not None
    assert outcome.exit.reason is ExitReason.ORDER_PLACED
    # Intent to treat: the exited entrant's later order in the window still counts...
    second = replace(order, order_id=2, placed_at=T0 + timedelta(days=6))
    after_exit = on_order(welcome, outcome.exit.enrolment, second, T0 + timedelta(days=6))
    assert after_exit.conversion is not None and after_exit.exit is None
    # ...but not past the 7 days, nor before the entry.
    late = replace(order, order_id=3, placed_at=T0 + timedelta(days=7, seconds=1))
    assert (
        on_order(welcome, outcome.exit.enrolment, late, T0 + timedelta(days=8)).conversion is None
    )
    before = replace(order, order_id=4, placed_at=T0 - timedelta(seconds=1))
    assert on_order(welcome, enrolment, before, T0) == type(outcome)(None, None)


def test_vip_orders_convert_without_ending_the_journey() -> None:
    vip = shipped("vip-care")
    enrolment = enter(vip)
    order = OrderPlaced(1, 1, T0 + timedelta(days=1), Decimal("1200.00"))
    outcome = on_order(vip, enrolment, order, T0 + timedelta(days=1))
    assert outcome.conversion is not None and outcome.exit is None


def test_an_order_belongs_to_the_latest_enrolment_entered_before_it() -> None:
    welcome = shipped("welcome")
    first = enter(welcome)
    second = replace(first, entered_at=T0 + timedelta(days=3), entry_seq=9)
    assert enrolment_for_order([first, second], T0 + timedelta(days=4)) == second
    assert enrolment_for_order([second, first], T0 + timedelta(days=1)) == first
    assert enrolment_for_order([first], T0 - timedelta(days=1)) is None


def test_unsubscribe_and_redaction() -> None:
    welcome = shipped("welcome")
    enrolment = enter(welcome)
    gone = on_unsubscribe(welcome, enrolment, T0)
    assert isinstance(gone, Exit) and gone.reason is ExitReason.UNSUBSCRIBED
    assert on_unsubscribe(welcome, gone.enrolment, T0) == Ignore(IgnoreReason.NOT_ACTIVE)
    staying = shipped("welcome", exits={"unsubscribed": False})
    assert on_unsubscribe(staying, enrolment, T0) == Ignore(IgnoreReason.EXIT_NOT_ENABLED)
    redacted = on_redact(enrolment, T0)
    assert isinstance(redacted, Exit) and redacted.reason is ExitReason.REDACTED
    assert redacted.enrolment.ended_at == T0


def test_wrong_inputs_are_refused() -> None:
    welcome = shipped("welcome")
    enrolment = enter(welcome)
    with pytest.raises(ValueError, match="journey version the enrolment entered with"):
        next_step(shipped("welcome", version=2), enrolment, context(), T0)
    with pytest.raises(ValueError, match="different customers"):
        on_segment_change(welcome, enrolment, change(4, customer_id=2), T0, None)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        next_step(welcome, enrolment, context(), datetime(2025, 3, 3))


def _steps_json(journey: Journey) -> list[dict[str, object]]:
    from services.tagger.journeys.model import journey_definition

    steps: list[dict[str, object]] = journey_definition(journey)["steps"]
    return steps
