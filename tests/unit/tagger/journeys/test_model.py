"""Journeys as data: the JSON shape, its validation errors, versions, the shipped journeys."""

import copy
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.common.errors import bad_request
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules.templates import builtin_templates
from services.tagger.journeys.model import (
    Journey,
    JourneyIn,
    ReentryPolicy,
    TimingKind,
    format_duration,
    journey_definition,
    needs_new_version,
    parse_duration,
)
from services.tagger.journeys.shipped import SHIPPED_HANDLES, shipped_journey, shipped_journeys

MINIMAL: dict[str, Any] = {
    "handle": "thanks",
    "name": "Thanks",
    "trigger": {"segment": "first-purchase"},
    "steps": [{"key": "thanks", "timing": {"after": 3600}, "template": "thanks"}],
}


def journey(data: dict[str, Any], version: int = 1) -> Journey:
    return JourneyIn.model_validate(data).to_journey(journey_id=5, shop_id=1, version=version)


def error_of(change: dict[str, Any]) -> tuple[str | None, str]:
    """The field and message the API would answer for MINIMAL with `change` merged in."""
    data = copy.deepcopy(MINIMAL)
    data.update(change)
    with pytest.raises(ValidationError) as raised:
        JourneyIn.model_validate(data)
    error = bad_request(raised.value, "invalid_journey")
    return error.field, error.message


def test_defaults_are_the_documented_ones() -> None:
    made = journey(MINIMAL)
    assert made.holdout_share == Decimal("0.1")
    assert made.conversion_window == timedelta(days=7)
    assert made.quiet_hours is not None
    assert (made.quiet_hours.start, made.quiet_hours.end) == (time(21), time(9))
    assert made.reentry.policy is ReentryPolicy.NEVER
    assert (made.exits.segment_exited, made.exits.order_placed, made.exits.unsubscribed) == (
        True,
        True,
        True,
    )
    assert made.stale_after is None and made.enabled and not made.enrol_on_bulk
    assert made.steps[0].timing.delay == timedelta(hours=1)
    assert made.steps[0].marketing


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"handle": "Bad Handle"}, "handle", "pattern"),
        ({"steps": []}, "steps", "at least 1"),
        ({"trigger": {"segment": ""}}, "trigger.segment", "pattern"),
        (
            {"steps": [{"key": "a", "timing": {"after": "P1M"}, "template": "t"}]},
            "steps[0].timing.after",
            "no months or years",
        ),
        (
            {"steps": [{"key": "a", "timing": {"after": -5}, "template": "t"}]},
            "steps[0].timing.after",
            "must not be negative",
        ),
        (
            {"steps": [{"key": "a", "timing": {"after": "P400D"}, "template": "t"}]},
            "steps[0].timing.after",
            "365 days",
        ),
        (
            {"steps": [{"key": "a", "timing": {"at": "entry", "after": 5}, "template": "t"}]},
            "steps[0].timing",
            "exactly one of",
        ),
        (
            {"steps": [{"key": "a", "timing": {"at": "entry", "from": "entry"}, "template": "t"}]},
            "steps[0].timing",
            "from goes only with after",
        ),
        (
            {
                "steps": [
                    {"key": "a", "timing": {"after": "P3D"}, "template": "t"},
                    {"key": "b", "timing": {"after": "P1D"}, "template": "t"},
                ]
            },
            "steps",
            "steps[1].timing: due before the step ahead of it",
        ),
        (
            {
                "steps": [
                    {"key": "a", "timing": {"at": "entry"}, "template": "t"},
                    {"key": "a", "timing": {"after": "P1D"}, "template": "t"},
                ]
            },
            "steps",
            "steps[1].key: 'a' is used twice",
        ),
        (
            {
                "steps": [
                    {
                        "key": "a",
                        "timing": {"at": "entry"},
                        "template": "t",
                        "condition": {"all": [{"name": "orders_count", "operator": "is_true"}]},
                    }
                ]
            },
            "steps[0].condition",
            "condition.all[0]: missing key 'value'",
        ),
        (
            {
                "steps": [
                    {
                        "key": "a",
                        "timing": {"at": "entry"},
                        "template": "t",
                        "condition": {"all": [{"name": "x", "operator": "y", "value": 1}]},
                    }
                ]
            },
            "steps[0].condition",
            "condition.all[0].name: unknown variable 'x'",
        ),
        (
            {"steps": [{"key": "a", "timing": {"at": "entry"}, "template": "t", "marketing": 1}]},
            "steps[0].marketing",
            "boolean",
        ),
        ({"holdout_share": Decimal("0.6")}, "holdout_share", "less than or equal to 0.5"),
        ({"holdout_share": Decimal("-0.1")}, "holdout_share", "greater than or equal to 0"),
        ({"conversion_window_days": 0}, "conversion_window_days", "greater than or equal to 1"),
        ({"exits": {"redacted": False}}, "exits.redacted", "always leaves every journey"),
        ({"reentry": {"policy": "after_days"}}, "reentry", "only with, after_days"),
        ({"reentry": {"policy": "sometimes"}}, "reentry.policy", "never"),
        ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "quiet_hours", "must differ"),
        ({"quiet_hours": {"start": "25:00", "end": "09:00"}}, "quiet_hours.start", "time"),
        ({"stale_after": "soon"}, "stale_after", "ISO-8601"),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_invalid_journeys_name_the_field(change: dict[str, Any], field: str, words: str) -> None:
    got_field, message = error_of(change)
    assert got_field == field
    assert words in message


def test_a_condition_is_a_segment_rule_evaluated_over_the_customers_facts() -> None:
    data = copy.deepcopy(MINIMAL)
    data["steps"][0]["condition"] = {
        "all": [
            {"name": "orders_count", "operator": "equal_to", "value": 0},
            {"name": "days_since_registration", "operator": "less_than", "value": 30},
        ]
    }
    step = journey(data).steps[0]
    now = datetime(2025, 5, 1, tzinfo=UTC)
    fresh = CustomerFacts(shop_id=1, customer_id=2, registered_at=now - timedelta(days=3))
    assert step.condition_holds(fresh, now)
    assert not step.condition_holds(fresh, now + timedelta(days=40))  # time alone changed it
    ordered = CustomerFacts(
        shop_id=1, customer_id=2, registered_at=now - timedelta(days=3), orders_count=1
    )
    assert not step.condition_holds(ordered, now)
    assert journey(MINIMAL).steps[0].condition_holds(ordered, now)  # no condition: true


durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=365)).map(
    lambda d: timedelta(seconds=int(d.total_seconds()))
)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(durations)
def test_durations_round_trip_through_their_iso_form(duration: timedelta) -> None:
    assert parse_duration(format_duration(duration)) == duration
    assert parse_duration(int(duration.total_seconds())) == duration


def test_duration_forms() -> None:
    assert parse_duration("PT1H") == timedelta(hours=1)
    assert parse_duration("p1w") == timedelta(weeks=1)
    assert parse_duration("P1DT2H30M5S") == timedelta(days=1, hours=2, minutes=30, seconds=5)
    assert format_duration(timedelta(days=14)) == "P14D"
    assert format_duration(timedelta(0)) == "PT0S"
    for text in ("P", "PT", "P1Y", "P1.5D", "1H", "PT1H2D"):
        with pytest.raises(ValueError):
            parse_duration(text)
    with pytest.raises(ValueError):
        parse_duration(True)


@pytest.mark.parametrize("handle", SHIPPED_HANDLES)
def test_every_journey_round_trips_through_its_definition(handle: str) -> None:
    made = shipped_journey(handle).to_journey(journey_id=9, shop_id=3, version=2)
    again = JourneyIn.model_validate(journey_definition(made))
    assert again.to_journey(journey_id=9, shop_id=3, version=2) == made


def test_an_edit_of_the_path_makes_a_new_version_a_rename_or_pause_does_not() -> None:
    current = journey(MINIMAL)
    renamed = journey({**MINIMAL, "name": "Thank you", "handle": "thank-you", "enabled": False})
    assert not needs_new_version(current, renamed)
    for change in (
        {"holdout_share": Decimal("0.2")},
        {"quiet_hours": None},
        {"reentry": {"policy": "after_exit"}},
        {"steps": [{"key": "thanks", "timing": {"after": 7200}, "template": "thanks"}]},
        {"exits": {"order_placed": False}},
    ):
        assert needs_new_version(current, journey({**MINIMAL, **change})), change


def test_the_shipped_journeys_are_the_ones_domain_md_names() -> None:
    by_handle = {
        item.handle: item.to_journey(journey_id=1, shop_id=1, version=1)
        for item in shipped_journeys()
    }
    assert list(by_handle) == ["welcome", "vip-care", "win-back"]

    welcome = by_handle["welcome"]
    assert welcome.trigger_segment == "new-customer"
    assert [step.timing.delay for step in welcome.steps] == [
        timedelta(hours=1),
        timedelta(days=3),
        timedelta(days=7),
        timedelta(days=14),
    ]
    assert all(step.timing.kind is TimingKind.AFTER_ENTRY for step in welcome.steps)
    assert welcome.conversion_window == timedelta(days=7)
    assert welcome.steps[2].condition is not None  # the coupon only before a first order

    vip = by_handle["vip-care"]
    assert vip.trigger_segment == "vip"
    assert [step.timing for step in vip.steps][0].delay == timedelta(0)
    assert vip.steps[1].timing.kind is TimingKind.BIRTHDAY_MONTH
    assert not vip.exits.order_placed  # VIPs keep ordering; that ends nothing
    assert vip.conversion_window == timedelta(days=14)

    win_back = by_handle["win-back"]
    assert win_back.trigger_segment == "churn-risk"
    assert [step.key for step in win_back.steps] == [
        "we-miss-you",
        "return-offer",
        "new-arrivals",
        "survey",
    ]
    assert win_back.conversion_window == timedelta(days=30)
    for made in by_handle.values():
        assert made.holdout_share == Decimal("0.1")
        assert all(step.marketing for step in made.steps)


def test_shipped_triggers_are_built_in_segments_that_name_the_journey() -> None:
    templates = {template["handle"]: template for template in builtin_templates()}
    for item in shipped_journeys():
        template = templates[item.trigger.segment]
        enrolments = [
            action["params"]["journey"]
            for action in template["actions"]
            if action["name"] == "enroll_journey"
        ]
        assert enrolments == [item.handle]
