"""When a rule's result can next change with no new event: the days_since_* conditions flip
only as their day count passes a boundary, at anchor + k whole days."""

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules.days import day_range
from services.segmenter.domain.rules.variables import DAY, VARIABLES, Source


def next_flip_at(
    conditions: Mapping[str, Any], facts: CustomerFacts, now: datetime
) -> datetime | None:
    """The earliest moment after now at which any time-dependent condition of the rule changes
    its truth (conservative: over all of them, whatever the rest of the rule says), or None."""
    earliest: datetime | None = None
    for condition in _leaves(conditions):
        variable = VARIABLES[condition["name"]]
        if variable.source is not Source.DAYS_SINCE:
            continue
        anchor: datetime | None = getattr(facts, variable.column)
        days = day_range(condition["operator"], condition["value"])
        if anchor is None or days is None:
            continue
        today = (now - anchor) // DAY
        for boundary in days.boundaries():
            if boundary <= today:
                continue  # day counts only grow: a boundary already passed never comes back
            try:
                at = anchor + boundary * DAY
            except OverflowError:
                continue  # beyond datetime's range: never
            if earliest is None or at < earliest:
                earliest = at
    return earliest


def reads_time(conditions: Mapping[str, Any]) -> bool:
    """Whether any condition of the rule changes with time alone (a days_since_* variable)."""
    return any(VARIABLES[leaf["name"]].source is Source.DAYS_SINCE for leaf in _leaves(conditions))


def _leaves(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("all", "any"):
        if key in node:
            for child in node[key]:
                yield from _leaves(child)
            return
    yield node
