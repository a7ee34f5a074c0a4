"""Journeys as data: the JSON the API accepts (pydantic, every error naming its field) and the
frozen dataclasses the step machine runs on.

Versioning: an edit of anything that shapes a customer's path (VERSIONED_FIELDS) makes a new
version, and an enrolment keeps the version it entered with. Its step index, delays and
conditions mean something only in that version: moving people mid-path onto edited steps
would send a step twice or skip one when steps are inserted, removed or reordered, and would
mix two definitions in one entrant's intent-to-treat record. What people want to reach
in-flight customers at once still does: an email's content lives in its template (by key, not
versioned here), and `enabled`, the name and the handle belong to the journey, not a version.

A step names a shipped template's key (`"template": "welcome.hello"`) or carries the
merchant's own (`"own_template": {subject, html, text?}`, TemplateIn). The own template is
stored beside the journey, per step key, not in a version: a version's step says only
`"template": "own"` (OWN_TEMPLATE), so fixing a typo reaches everyone at once, and switching a
step between a shipped and an own template is a path change like any other.

Step conditions are segment rules: the same JSON, validated and compiled by the segmenter's
rules package, evaluated over the same CustomerFacts.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules.compile_py import Predicate, compile_conditions
from services.segmenter.domain.rules.validate import RuleError, validate_conditions
from services.tagger.journeys.holdout import MAX_SHARE
from services.tagger.journeys.timing import QuietHours

HANDLE = r"^[a-z0-9][a-z0-9-]{0,63}$"
TEMPLATE = r"^[a-z0-9][a-z0-9._-]{0,99}$"
# A version's step whose email is its journey's own (journey_templates, by step key).
OWN_TEMPLATE = "own"
# The longest template part accepted (the renderer refuses longer ones too).
MAX_TEMPLATE_CHARS = 100_000
MAX_STEPS = 20
MAX_DELAY = timedelta(days=365)
DEFAULT_HOLDOUT_SHARE = Decimal("0.1")
DEFAULT_QUIET_HOURS = QuietHours(time(21), time(9))
VERSIONED_FIELDS = (
    "trigger_segment",
    "steps",
    "exits",
    "reentry",
    "holdout_share",
    "conversion_window",
    "quiet_hours",
    "stale_after",
    "enrol_on_bulk",
)


class TimingKind(StrEnum):
    """What a step's delay counts from."""

    AFTER_ENTRY = "after_entry"
    AFTER_PREVIOUS = "after_previous"  # from when the previous step was decided
    BIRTHDAY_MONTH = "birthday_month"  # the customer's next birthday month, local time


@dataclass(frozen=True)
class Timing:
    """When a step falls due (before quiet hours and the cap)."""

    kind: TimingKind
    delay: timedelta = timedelta(0)


@dataclass(frozen=True)
class Step:
    """One email of a journey; the condition, if any, is re-checked before each send."""

    key: str
    timing: Timing
    template: str
    marketing: bool = True
    condition: Mapping[str, Any] | None = None
    _check: Predicate | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.condition is not None:
            validate_conditions(self.condition)
            object.__setattr__(self, "_check", compile_conditions(self.condition))

    def condition_holds(self, facts: CustomerFacts, now: datetime) -> bool:
        """Whether the step's condition is true for these facts now (no condition: true)."""
        return self._check is None or self._check(facts, now)


class ReentryPolicy(StrEnum):
    """Whether a customer who was enrolled before may enter again."""

    NEVER = "never"
    AFTER_EXIT = "after_exit"  # once the previous enrolment ended (exited or completed)
    AFTER_DAYS = "after_days"  # once it ended and `days` passed since it began


@dataclass(frozen=True)
class Reentry:
    policy: ReentryPolicy
    days: int | None = None


@dataclass(frozen=True)
class Exits:
    """Which events end an enrolment early; redaction always does."""

    segment_exited: bool = True
    order_placed: bool = True
    unsubscribed: bool = True


@dataclass(frozen=True)
class Journey:
    """One version of a journey, as the machine runs it. `enabled` is the journey's current
    switch (not versioned): pass the current value even with an older version's steps."""

    journey_id: int
    shop_id: int
    version: int
    handle: str
    name: str
    trigger_segment: str
    steps: tuple[Step, ...]
    exits: Exits = Exits()
    reentry: Reentry = Reentry(ReentryPolicy.NEVER)
    holdout_share: Decimal = DEFAULT_HOLDOUT_SHARE
    conversion_window: timedelta = timedelta(days=7)
    quiet_hours: QuietHours | None = DEFAULT_QUIET_HOURS
    stale_after: timedelta | None = None
    enrol_on_bulk: bool = False
    enabled: bool = True


# --- durations -------------------------------------------------------------------------------

_ISO_DURATION = re.compile(
    r"P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?"
)


def parse_duration(value: object) -> timedelta:
    """Whole seconds (an integer) or an ISO-8601 duration of weeks, days, hours, minutes and
    seconds ("PT1H", "P3D", "P1DT12H"); months and years are refused as having no fixed length."""
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, int) and not isinstance(value, bool):
        duration = timedelta(seconds=value)
    elif isinstance(value, str):
        match = _ISO_DURATION.fullmatch(value.strip().upper())
        if match is None:
            raise PydanticCustomError(
                "duration",
                "expected whole seconds or an ISO-8601 duration such as PT1H or P3D "
                "(weeks, days, hours, minutes, seconds; no months or years)",
            )
        parts = {name: int(number) for name, number in match.groupdict(default="0").items()}
        duration = timedelta(**parts)
    else:
        raise PydanticCustomError("duration", "expected whole seconds or an ISO-8601 duration")
    if duration < timedelta(0):
        raise PydanticCustomError("duration", "a duration must not be negative")
    if duration > MAX_DELAY:
        raise PydanticCustomError("duration", "a duration must not exceed 365 days")
    return duration


def format_duration(duration: timedelta) -> str:
    """The ISO-8601 form parse_duration reads back: "P3D", "PT1H", "P1DT2H30M", "PT0S"."""
    seconds = int(duration.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time_part = "".join(
        f"{number}{unit}"
        for number, unit in ((hours, "H"), (minutes, "M"), (seconds, "S"))
        if number
    )
    text = "P" + (f"{days}D" if days else "") + (f"T{time_part}" if time_part else "")
    return "PT0S" if text == "P" else text


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


# --- the API's JSON --------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TimingIn(_In):
    """Exactly one of: {"after": duration, "from": "entry"|"previous"}, {"at": "entry"},
    {"calendar": "birthday_month"}."""

    after: Duration | None = None
    from_: Literal["entry", "previous"] | None = Field(default=None, alias="from")
    at: Literal["entry"] | None = None
    calendar: Literal["birthday_month"] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "TimingIn":
        given = [name for name in ("after", "at", "calendar") if getattr(self, name) is not None]
        if len(given) != 1:
            raise PydanticCustomError("timing", "give exactly one of after, at or calendar")
        if self.from_ is not None and self.after is None:
            raise PydanticCustomError("timing", "from goes only with after")
        return self

    def to_timing(self) -> Timing:
        if self.calendar is not None:
            return Timing(TimingKind.BIRTHDAY_MONTH)
        if self.after is None:
            return Timing(TimingKind.AFTER_ENTRY)
        kind = TimingKind.AFTER_PREVIOUS if self.from_ == "previous" else TimingKind.AFTER_ENTRY
        return Timing(kind, self.after)


class TemplateIn(_In):
    """A merchant's own email for one step (Jinja2, rendered in the sandbox; see
    services/tagger/email/templates.py for the variables). Without `text` the plain-text part
    is made from the HTML."""

    subject: str = Field(min_length=1, max_length=998)
    html: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEMPLATE_CHARS)


class StepIn(_In):
    """One step; exactly one of `template` (a shipped template's key) and `own_template`."""

    key: str = Field(pattern=HANDLE)
    timing: TimingIn
    template: str | None = Field(default=None, pattern=TEMPLATE)
    own_template: TemplateIn | None = None
    condition: dict[str, Any] | None = None
    marketing: StrictBool = True

    @field_validator("condition")
    @classmethod
    def _rule(cls, condition: dict[str, Any] | None) -> dict[str, Any] | None:
        if condition is not None:
            try:
                validate_conditions(condition)
            except RuleError as exc:
                path = "condition" + exc.path.removeprefix("conditions")
                raise PydanticCustomError(
                    "invalid_rule", "{path}: {message}", {"path": path, "message": exc.message}
                ) from None
        return condition

    @model_validator(mode="after")
    def _one_template(self) -> "StepIn":
        if (self.template is None) == (self.own_template is None):
            raise PydanticCustomError(
                "template", "give exactly one of template (a shipped key) or own_template"
            )
        return self


class TriggerIn(_In):
    segment: str = Field(pattern=HANDLE)


class ExitsIn(_In):
    segment_exited: StrictBool = True
    order_placed: StrictBool = True
    unsubscribed: StrictBool = True
    redacted: StrictBool = True

    @field_validator("redacted")
    @classmethod
    def _always(cls, redacted: bool) -> bool:
        if not redacted:
            raise PydanticCustomError(
                "redaction", "a redacted customer always leaves every journey (GDPR)"
            )
        return redacted


class ReentryIn(_In):
    policy: Literal["never", "after_exit", "after_days"] = "never"
    days: StrictInt | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _days(self) -> "ReentryIn":
        if (self.policy == "after_days") != (self.days is not None):
            raise PydanticCustomError("reentry", "days goes with, and only with, after_days")
        return self


class QuietHoursIn(_In):
    start: time
    end: time

    @model_validator(mode="after")
    def _distinct(self) -> "QuietHoursIn":
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise PydanticCustomError("quiet_hours", "quiet hours are local times without a zone")
        if self.start == self.end:
            raise PydanticCustomError("quiet_hours", "start and end must differ (or use null)")
        return self


class JourneyIn(_In):
    """A journey as created or edited through the API."""

    handle: str = Field(pattern=HANDLE)
    name: str = Field(min_length=1, max_length=200)
    trigger: TriggerIn
    steps: list[StepIn] = Field(min_length=1, max_length=MAX_STEPS)
    exits: ExitsIn = ExitsIn()
    reentry: ReentryIn = ReentryIn()
    holdout_share: Decimal = Field(default=DEFAULT_HOLDOUT_SHARE, ge=0, le=MAX_SHARE)
    conversion_window_days: StrictInt = Field(default=7, ge=1, le=365)
    quiet_hours: QuietHoursIn | None = QuietHoursIn(start=time(21), end=time(9))
    stale_after: Duration | None = None
    enrol_on_bulk: StrictBool = False
    enabled: StrictBool = True

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[StepIn]) -> list[StepIn]:
        seen: set[str] = set()
        previous_from_entry: timedelta | None = None
        for index, step in enumerate(steps):
            if step.key in seen:
                raise PydanticCustomError(
                    "steps",
                    "steps[{index}].key: '{key}' is used twice",
                    {"index": index, "key": step.key},
                )
            seen.add(step.key)
            timing = step.timing.to_timing()
            if timing.kind is TimingKind.AFTER_ENTRY:
                if previous_from_entry is not None and timing.delay < previous_from_entry:
                    raise PydanticCustomError(
                        "steps",
                        "steps[{index}].timing: due before the step ahead of it",
                        {"index": index},
                    )
                previous_from_entry = timing.delay
        return steps

    def own_templates(self) -> dict[str, TemplateIn]:
        """The steps' own emails by step key (steps naming a shipped template have none)."""
        return {step.key: step.own_template for step in self.steps if step.own_template}

    def to_journey(self, *, journey_id: int, shop_id: int, version: int) -> Journey:
        """The dataclass the machine runs, with conditions compiled."""
        return Journey(
            journey_id=journey_id,
            shop_id=shop_id,
            version=version,
            handle=self.handle,
            name=self.name,
            trigger_segment=self.trigger.segment,
            steps=tuple(
                Step(
                    key=step.key,
                    timing=step.timing.to_timing(),
                    template=step.template or OWN_TEMPLATE,
                    marketing=step.marketing,
                    condition=step.condition,
                )
                for step in self.steps
            ),
            exits=Exits(
                segment_exited=self.exits.segment_exited,
                order_placed=self.exits.order_placed,
                unsubscribed=self.exits.unsubscribed,
            ),
            reentry=Reentry(ReentryPolicy(self.reentry.policy), self.reentry.days),
            holdout_share=self.holdout_share,
            conversion_window=timedelta(days=self.conversion_window_days),
            quiet_hours=(
                QuietHours(self.quiet_hours.start, self.quiet_hours.end)
                if self.quiet_hours is not None
                else None
            ),
            stale_after=self.stale_after,
            enrol_on_bulk=self.enrol_on_bulk,
            enabled=self.enabled,
        )


def journey_definition(journey: Journey) -> dict[str, Any]:
    """The journey in the API's JSON shape (JourneyIn reads it back); money-like shares stay
    Decimal, durations are ISO-8601, times HH:MM."""
    return {
        "handle": journey.handle,
        "name": journey.name,
        "trigger": {"segment": journey.trigger_segment},
        "steps": [_step_json(step) for step in journey.steps],
        "exits": {
            "segment_exited": journey.exits.segment_exited,
            "order_placed": journey.exits.order_placed,
            "unsubscribed": journey.exits.unsubscribed,
            "redacted": True,
        },
        "reentry": (
            {"policy": journey.reentry.policy.value, "days": journey.reentry.days}
            if journey.reentry.policy is ReentryPolicy.AFTER_DAYS
            else {"policy": journey.reentry.policy.value}
        ),
        "holdout_share": journey.holdout_share,
        "conversion_window_days": journey.conversion_window.days,
        "quiet_hours": (
            {
                "start": journey.quiet_hours.start.strftime("%H:%M"),
                "end": journey.quiet_hours.end.strftime("%H:%M"),
            }
            if journey.quiet_hours is not None
            else None
        ),
        "stale_after": (
            format_duration(journey.stale_after) if journey.stale_after is not None else None
        ),
        "enrol_on_bulk": journey.enrol_on_bulk,
        "enabled": journey.enabled,
    }


def needs_new_version(current: Journey, edited: Journey) -> bool:
    """Whether saving `edited` over `current` makes a new version (a path-shaping change)."""
    return any(getattr(current, name) != getattr(edited, name) for name in VERSIONED_FIELDS)


def _step_json(step: Step) -> dict[str, Any]:
    timing: dict[str, Any]
    if step.timing.kind is TimingKind.BIRTHDAY_MONTH:
        timing = {"calendar": "birthday_month"}
    elif step.timing.kind is TimingKind.AFTER_ENTRY and not step.timing.delay:
        timing = {"at": "entry"}
    elif step.timing.kind is TimingKind.AFTER_ENTRY:
        timing = {"after": format_duration(step.timing.delay)}
    else:
        timing = {"after": format_duration(step.timing.delay), "from": "previous"}
    result: dict[str, Any] = {"key": step.key, "timing": timing, "template": step.template}
    if step.condition is not None:
        result["condition"] = step.condition
    result["marketing"] = step.marketing
    return result
