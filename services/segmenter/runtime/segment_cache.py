"""The shops' segments, each version compiled once, evaluated against customer facts."""

from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.common.envelope import loads_json
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules.compile_py import compile_conditions
from services.segmenter.domain.rules.schedule import next_flip_at, reads_time
from services.segmenter.domain.rules.variables import VARIABLES
from services.segmenter.storage.queries import SEGMENTS_OF_SHOPS


@dataclass(frozen=True)
class CompiledSegment:
    id: int
    shop_id: int
    handle: str
    version: int
    conditions: Mapping[str, Any]
    matches: Callable[[CustomerFacts, datetime], bool]
    # Most rules never flip by time alone; those skip the next-flip computation.
    reads_time: bool
    # The CustomerFacts fields the rule reads: facts that did not change cannot change it.
    columns: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Evaluation:
    segment_ids: frozenset[int]
    next_flip_at: datetime | None


class RuleBook:
    """Keeps compiled segments by (id, version), so a rule is compiled once per version."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[int, int], CompiledSegment] = {}

    def compile(
        self, segment_id: int, shop_id: int, handle: str, version: int, conditions: Any
    ) -> CompiledSegment:
        """The compiled segment, compiling it if this version is new."""
        key = (segment_id, version)
        compiled = self._compiled.get(key)
        if compiled is None:
            if isinstance(conditions, str | bytes):
                conditions = loads_json(conditions)
            compiled = CompiledSegment(
                segment_id,
                shop_id,
                handle,
                version,
                conditions,
                compile_conditions(conditions),
                reads_time(conditions),
                columns_read(conditions),
            )
            self._compiled[key] = compiled
        return compiled

    async def segments_of(
        self, conn: asyncpg.Connection, shop_ids: Iterable[int]
    ) -> dict[int, list[CompiledSegment]]:
        """The current segments of these shops, compiled."""
        by_shop: dict[int, list[CompiledSegment]] = {shop_id: [] for shop_id in shop_ids}
        current = set()
        for row in await conn.fetch(SEGMENTS_OF_SHOPS, list(by_shop)):
            segment = self.compile(
                row["id"], row["shop_id"], row["handle"], row["version"], row["conditions"]
            )
            by_shop[row["shop_id"]].append(segment)
            current.add((row["id"], row["version"]))
        # Forget versions that no longer exist for these shops (edited or deleted segments).
        shops = set(by_shop)
        for key in [
            k for k, s in self._compiled.items() if s.shop_id in shops and k not in current
        ]:
            del self._compiled[key]
        return by_shop


def columns_read(conditions: Mapping[str, Any]) -> frozenset[str]:
    """The CustomerFacts fields (= customers columns) a rule's conditions read."""
    for key in ("all", "any"):
        if key in conditions:
            return frozenset().union(*(columns_read(child) for child in conditions[key]))
    return frozenset({VARIABLES[conditions["name"]].column})


def evaluate(
    segments: Iterable[CompiledSegment],
    facts: CustomerFacts,
    now: datetime,
    members_before: AbstractSet[int] = frozenset(),
    changed: AbstractSet[str] | None = None,
) -> Evaluation:
    """The segments the customer is in now, and the next time one result may flip by itself.

    With `changed` (the facts that changed since the stored evaluation, whose memberships are
    `members_before`), a segment that reads none of them and not the time keeps its result
    unevaluated. Time-reading segments are always evaluated, so the next flip stays right.
    """
    members = set()
    flips = []
    for segment in segments:
        if changed is not None and not segment.reads_time and changed.isdisjoint(segment.columns):
            if segment.id in members_before:
                members.add(segment.id)
            continue
        if segment.matches(facts, now):
            members.add(segment.id)
        if segment.reads_time:
            flip = next_flip_at(segment.conditions, facts, now)
            if flip is not None:
                flips.append(flip)
    return Evaluation(frozenset(members), min(flips) if flips else None)
