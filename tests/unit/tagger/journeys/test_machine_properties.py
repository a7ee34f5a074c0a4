"""The step machine under random interleavings of segment changes (duplicated, reordered),
scheduler calls, consent changes and orders: at most one active enrolment per journey and
customer, each step decided at most once, nothing dropped."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.tagger.journeys.enrolment import (
    Defer,
    Done,
    Enrolment,
    Enter,
    Exit,
    Ignore,
    OrderPlaced,
    SegmentChange,
    Send,
    Skip,
    Suppress,
)
from services.tagger.journeys.holdout import Group
from services.tagger.journeys.machine import (
    enrolment_for_order,
    next_step,
    on_order,
    on_segment_change,
)
from services.tagger.journeys.model import Journey
from tests.unit.tagger.journeys.journeys_helpers import T0, change, context, shipped

CUSTOMER = 3


@dataclass
class World:
    """What storage would hold for one journey and one customer."""

    journey: Journey
    enrolments: list[Enrolment] = field(default_factory=list)
    seen_seq: int | None = None
    decided: set[tuple[int, int]] = field(default_factory=set)
    applied: list[SegmentChange] = field(default_factory=list)
    consent: str = "subscribed"
    last_order_at: datetime | None = None

    def latest(self) -> Enrolment | None:
        return self.enrolments[-1] if self.enrolments else None

    def in_segment(self) -> bool:
        return bool(self.applied) and self.applied[-1].change == "entered"

    def deliver(self, message: SegmentChange, now: datetime) -> None:
        before = self.seen_seq
        outcome = on_segment_change(self.journey, self.latest(), message, now, self.seen_seq)
        decision = outcome.decision
        if before is not None and message.seq <= before:
            assert isinstance(decision, Ignore)
            assert outcome.seen_seq == before
            return
        assert outcome.seen_seq == message.seq
        self.seen_seq = outcome.seen_seq
        self.applied.append(message)
        if isinstance(decision, Enter):
            latest = self.latest()
            assert latest is None or not latest.active
            assert message.change == "entered"
            self.enrolments.append(decision.enrolment)
        elif isinstance(decision, Exit):
            assert message.change == "exited"
            self.enrolments[-1] = decision.enrolment
        self.check()

    def tick(self, now: datetime, rounds: int = 8) -> None:
        """The scheduler: decide whatever is due at `now`."""
        for _ in range(rounds):
            enrolment = self.latest()
            if enrolment is None or enrolment.next_due_at is None:
                return
            if not enrolment.active or enrolment.next_due_at > now:
                return
            self.decide(enrolment, now)

    def decide(self, enrolment: Enrolment, now: datetime) -> None:
        ctx = context(
            CUSTOMER,
            email_consent=self.consent,
            in_trigger_segment=self.in_segment(),
            facts={"birthday_month": 6, "last_order_at": self.last_order_at},
        )
        decision = next_step(self.journey, enrolment, ctx, now)
        index = len(self.enrolments) - 1
        if isinstance(decision, Send | Suppress | Skip):
            key = (index, decision.step_index)
            assert key not in self.decided, f"step {key} decided twice"
            assert decision.step_index == enrolment.step_index
            assert decision.enrolment.step_index == enrolment.step_index + 1
            self.decided.add(key)
        if isinstance(decision, Send):
            assert enrolment.group is Group.TREATED
            assert not decision.step.marketing or self.consent == "subscribed"
        if isinstance(decision, Suppress):
            assert enrolment.group is Group.HOLDOUT
        if isinstance(decision, Defer):
            assert decision.until > now
            assert decision.enrolment.step_index == enrolment.step_index
        if isinstance(decision, Done):
            assert not decision.enrolment.active
        self.enrolments[-1] = decision.enrolment
        self.check()

    def check(self) -> None:
        assert sum(enrolment.active for enrolment in self.enrolments) <= 1
        seqs = [enrolment.entry_seq for enrolment in self.enrolments]
        assert seqs == sorted(set(seqs))


Action = tuple[Literal["deliver", "tick", "consent", "order"], int]


@st.composite
def histories(draw: st.DrawFn) -> tuple[Journey, list[SegmentChange], list[Action]]:
    handle = draw(st.sampled_from(["welcome", "vip-care", "win-back"]))
    journey = shipped(
        handle,
        holdout_share=draw(st.sampled_from([Decimal(0), Decimal("0.5")])),
        reentry=draw(
            st.sampled_from(
                [{"policy": "never"}, {"policy": "after_exit"}, {"policy": "after_days", "days": 2}]
            )
        ),
        exits=draw(
            st.fixed_dictionaries({"segment_exited": st.booleans(), "order_placed": st.booleans()})
        ),
    )
    # The customer's true history: alternating entries and exits, seq and time increasing.
    toggles = draw(st.integers(min_value=1, max_value=7))
    gaps = draw(
        st.lists(st.integers(min_value=1, max_value=96), min_size=toggles, max_size=toggles)
    )
    changes = []
    at = T0
    for index, hours in enumerate(gaps):
        at += timedelta(hours=hours)
        kind: Literal["entered", "exited"] = "entered" if index % 2 == 0 else "exited"
        changes.append(
            change(10 * (index + 1), kind, at, CUSTOMER, segment=journey.trigger_segment)
        )
    # Deliveries: every change at least once, some twice or three times, in any order, mixed
    # with scheduler ticks, consent flips and orders.
    deliveries: list[Action] = [("deliver", i) for i in range(len(changes))]
    deliveries += draw(st.lists(st.sampled_from(deliveries), max_size=len(changes) * 2))
    kinds: list[Literal["tick", "consent", "order"]] = [
        "tick",
        "tick",
        "consent",
        "consent",
        "order",
    ]
    others: list[Action] = draw(
        st.lists(
            st.tuples(
                st.sampled_from(kinds),
                st.integers(min_value=0, max_value=9),
            ),
            max_size=40,
        )
    )
    actions: list[Action] = draw(st.permutations([*deliveries, *others]))
    return journey, changes, actions


@settings(max_examples=120, derandomize=True, deadline=None)
@given(histories())
def test_random_interleavings_keep_the_machines_promises(
    history: tuple[Journey, list[SegmentChange], list[Action]],
) -> None:
    journey, changes, actions = history
    world = World(journey)
    clock = T0
    for kind, value in actions:
        if kind == "deliver":
            message = changes[value]
            clock = max(clock, message.changed_at) + timedelta(minutes=1)
            world.deliver(message, clock)
        elif kind == "tick":
            clock += timedelta(hours=value * 7)
            world.tick(clock)
        elif kind == "consent":
            world.consent = ["unsubscribed", "pending", "not_subscribed", "subscribed"][value % 4]
        else:
            clock += timedelta(minutes=5)
            world.last_order_at = clock
            placed = OrderPlaced(value, CUSTOMER, clock, Decimal(value))
            belongs = enrolment_for_order(world.enrolments, clock)
            if belongs is not None:
                outcome = on_order(journey, belongs, placed, clock)
                if outcome.exit is not None:
                    assert belongs is world.latest() and belongs.active
                    world.enrolments[-1] = outcome.exit.enrolment
                if outcome.conversion is not None:
                    assert outcome.conversion.group is belongs.group
            world.check()
    # The customer's last known state is out of the segment: with that exit on, nothing stays.
    latest = world.latest()
    if latest is not None and journey.exits.segment_exited and not world.in_segment():
        world.tick(clock + timedelta(days=400), rounds=1)
        assert not world.enrolments[-1].active
    # Nothing is dropped: driving the scheduler to each due time ends every enrolment.
    world.consent = "subscribed"
    for _ in range(20):
        latest = world.latest()
        if latest is None or not latest.active or latest.next_due_at is None:
            break
        clock = max(clock, latest.next_due_at)
        world.decide(latest, clock)
    latest = world.latest()
    assert latest is None or not latest.active


@settings(max_examples=50, derandomize=True, deadline=None)
@given(histories(), st.data())
def test_duplicates_change_nothing(
    history: tuple[Journey, list[SegmentChange], list[Action]], data: st.DataObject
) -> None:
    journey, changes, _ = history
    order = data.draw(st.permutations(range(len(changes))))
    extra = data.draw(st.lists(st.sampled_from(range(len(changes))), max_size=6))
    positions = data.draw(
        st.lists(
            st.integers(min_value=0, max_value=len(order)), min_size=len(extra), max_size=len(extra)
        )
    )
    with_duplicates = list(order)
    for index, position in sorted(zip(extra, positions, strict=True), key=lambda p: -p[1]):
        # A duplicate is delivered at or after its original.
        first = with_duplicates.index(index)
        with_duplicates.insert(max(position, first + 1), index)

    def run(sequence: list[int]) -> list[Enrolment]:
        world = World(journey)
        clock = changes[-1].changed_at + timedelta(minutes=1)
        for index in sequence:
            world.deliver(changes[index], clock)
        return world.enrolments

    assert run(with_duplicates) == run(list(order))
