"""The journeys' SQL: definitions and versions, enrolments, seen seqs, send records,
conversions and consent overrides. Every function takes the caller's connection (and so its
transaction); nothing here commits on its own.

A version's definition is stored as the API's JSON and compiled once per process: a stored
version never changes, so the compiled Journey is kept by (journey id, version), and only
the journey's current `enabled` is applied on every load. Steps' own emails are stored per
journey and step key (journey_templates), outside the versions: a version's step says
`"template": "own"`, and the API shows the stored one as the step's `own_template`.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from services.common import privacy
from services.common.envelope import loads_json
from services.segmenter.storage.rows import dumps
from services.tagger.journeys.enrolment import (
    Enrolment,
    EnrolmentStatus,
    Enter,
    Exit,
    OrderPlaced,
    SegmentChange,
)
from services.tagger.journeys.holdout import Group
from services.tagger.journeys.machine import (
    enrolment_for_order,
    on_order,
    on_segment_change,
    on_unsubscribe,
)
from services.tagger.journeys.model import (
    OWN_TEMPLATE,
    Journey,
    JourneyIn,
    TemplateIn,
    journey_definition,
    needs_new_version,
)
from services.tagger.journeys.reasons import ExitReason
from services.tagger.journeys.shipped import shipped_journeys

MARK_JOURNEYS_INSTALLED = """
UPDATE shops SET journeys_installed_at = $2
WHERE id = $1 AND journeys_installed_at IS NULL
RETURNING id
"""

INSERT_JOURNEY = """
INSERT INTO journeys (shop_id, handle, name, trigger_segment, enabled, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
ON CONFLICT (shop_id, handle) DO NOTHING
RETURNING id
"""

INSERT_VERSION = """
INSERT INTO journey_versions (journey_id, version, definition, created_at)
VALUES ($1, $2, $3::jsonb, $4)
"""

VERSION_DEFINITION = """
SELECT definition::text AS definition FROM journey_versions
WHERE journey_id = $1 AND version = $2
"""

JOURNEYS_OF_SEGMENT = """
SELECT id, current_version, enabled FROM journeys
WHERE shop_id = $1 AND trigger_segment = $2
ORDER BY id
"""

JOURNEY_ENABLED = "SELECT enabled FROM journeys WHERE id = $1"

SEEN_FOR_UPDATE = """
SELECT seen_seq FROM journey_seen WHERE journey_id = $1 AND customer_id = $2 FOR UPDATE
"""

UPSERT_SEEN = """
INSERT INTO journey_seen (journey_id, customer_id, seen_seq) VALUES ($1, $2, $3)
ON CONFLICT (journey_id, customer_id) DO UPDATE
SET seen_seq = GREATEST(journey_seen.seen_seq, excluded.seen_seq)
"""

_ENROLMENT_COLUMNS = """
id, shop_id, journey_id, journey_version, customer_id, grp, state, entered_at, entry_seq,
step_index, last_step_at, next_due_at, exited_at, exit_reason
"""

LATEST_ENROLMENT = f"""
SELECT {_ENROLMENT_COLUMNS} FROM journey_enrolments
WHERE journey_id = $1 AND customer_id = $2
ORDER BY entered_at DESC, entry_seq DESC
LIMIT 1
FOR UPDATE
"""

ACTIVE_OF_CUSTOMER = f"""
SELECT {_ENROLMENT_COLUMNS} FROM journey_enrolments
WHERE shop_id = $1 AND customer_id = $2 AND state = 'active'
ORDER BY id
FOR UPDATE
"""

ENROLMENTS_OF_CUSTOMER = f"""
SELECT {_ENROLMENT_COLUMNS} FROM journey_enrolments
WHERE shop_id = $1 AND customer_id = $2
ORDER BY journey_id, entered_at, entry_seq
FOR UPDATE
"""

INSERT_ENROLMENT = """
INSERT INTO journey_enrolments (
    shop_id, journey_id, journey_version, customer_id, grp, state, entered_at, entry_seq,
    step_index, last_step_at, next_due_at, exited_at, exit_reason
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING id
"""

UPDATE_ENROLMENT = """
UPDATE journey_enrolments
SET state = $2, step_index = $3, last_step_at = $4, next_due_at = $5, exited_at = $6,
    exit_reason = $7
WHERE id = $1
"""

INSERT_CONVERSION = """
INSERT INTO journey_conversions (enrolment_id, order_id, placed_at, revenue)
VALUES ($1, $2, $3, $4)
ON CONFLICT (enrolment_id, order_id) DO NOTHING
"""


# Kept when a later version drops the step: enrolments on older versions still send it.
SAVE_TEMPLATE = """
INSERT INTO journey_templates (journey_id, step_key, subject, html, text, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (journey_id, step_key) DO UPDATE
SET subject = excluded.subject, html = excluded.html, text = excluded.text,
    updated_at = excluded.updated_at
"""

OWN_TEMPLATE_OF_STEP = """
SELECT subject, html, text FROM journey_templates WHERE journey_id = $1 AND step_key = $2
"""


@dataclass(frozen=True)
class StoredEnrolment:
    """An enrolment with its row id and shop."""

    id: int
    shop_id: int
    enrolment: Enrolment


_compiled: dict[tuple[int, int], Journey] = {}


def forget_compiled() -> None:
    """Drop the compiled versions kept by this process (a test starting on a new database,
    whose journey ids start again, must not see another database's versions)."""
    _compiled.clear()


def enrolment_from_row(row: asyncpg.Record) -> StoredEnrolment:
    """The enrolment in a journey_enrolments row."""
    reason = row["exit_reason"]
    return StoredEnrolment(
        id=row["id"],
        shop_id=row["shop_id"],
        enrolment=Enrolment(
            journey_id=row["journey_id"],
            journey_version=row["journey_version"],
            customer_id=row["customer_id"],
            group=Group(row["grp"]),
            entered_at=row["entered_at"],
            entry_seq=row["entry_seq"],
            status=EnrolmentStatus(row["state"]),
            step_index=row["step_index"],
            last_step_at=row["last_step_at"],
            next_due_at=row["next_due_at"],
            ended_at=row["exited_at"],
            exit_reason=ExitReason(reason) if reason is not None else None,
        ),
    )


async def create_journey(
    conn: asyncpg.Connection, shop_id: int, journey: JourneyIn, now: datetime
) -> int | None:
    """Insert a journey with its first version; None when the shop has that handle already."""
    journey_id: int | None = await conn.fetchval(
        INSERT_JOURNEY,
        shop_id,
        journey.handle,
        journey.name,
        journey.trigger.segment,
        journey.enabled,
        now,
    )
    if journey_id is None:
        return None
    compiled = journey.to_journey(journey_id=journey_id, shop_id=shop_id, version=1)
    await conn.execute(INSERT_VERSION, journey_id, 1, dumps(journey_definition(compiled)), now)
    await save_templates(conn, journey_id, journey.own_templates(), now)
    return journey_id


async def save_templates(
    conn: asyncpg.Connection, journey_id: int, templates: dict[str, TemplateIn], now: datetime
) -> None:
    """Store the steps' own emails (by step key), replacing earlier content of those keys."""
    for key, template in templates.items():
        await conn.execute(
            SAVE_TEMPLATE, journey_id, key, template.subject, template.html, template.text, now
        )


async def own_template(
    conn: asyncpg.Connection, journey_id: int, step_key: str
) -> asyncpg.Record | None:
    """A step's own email (subject, html, text), or None when the journey has none for it."""
    row: asyncpg.Record | None = await conn.fetchrow(OWN_TEMPLATE_OF_STEP, journey_id, step_key)
    return row


async def install_journeys(conn: asyncpg.Connection, shop_id: int, now: datetime) -> int:
    """Install the shipped journeys once per shop (later removals stay removed); return count."""
    if await conn.fetchval(MARK_JOURNEYS_INSTALLED, shop_id, now) is None:
        return 0
    installed = 0
    for journey in shipped_journeys():
        if await create_journey(conn, shop_id, journey, now) is not None:
            installed += 1
    return installed


async def load_journey(
    conn: asyncpg.Connection, shop_id: int, journey_id: int, version: int, enabled: bool
) -> Journey:
    """One stored version as the machine runs it, with the journey's current `enabled`."""
    key = (journey_id, version)
    compiled = _compiled.get(key)
    if compiled is None:
        text = await conn.fetchval(VERSION_DEFINITION, journey_id, version)
        if text is None:
            raise LookupError(f"journey {journey_id} has no version {version}")
        parsed = JourneyIn.model_validate(loads_json(text))
        compiled = parsed.to_journey(journey_id=journey_id, shop_id=shop_id, version=version)
        _compiled[key] = compiled
    return compiled if compiled.enabled == enabled else replace(compiled, enabled=enabled)


async def journey_for(conn: asyncpg.Connection, stored: StoredEnrolment) -> Journey:
    """The version an enrolment entered with, with the journey's current switch."""
    enabled = await conn.fetchval(JOURNEY_ENABLED, stored.enrolment.journey_id)
    return await load_journey(
        conn,
        stored.shop_id,
        stored.enrolment.journey_id,
        stored.enrolment.journey_version,
        bool(enabled),
    )


async def insert_enrolment(conn: asyncpg.Connection, shop_id: int, enrolment: Enrolment) -> int:
    e = enrolment
    enrolment_id: int = await conn.fetchval(
        INSERT_ENROLMENT,
        shop_id,
        e.journey_id,
        e.journey_version,
        e.customer_id,
        e.group.value,
        e.status.value,
        e.entered_at,
        e.entry_seq,
        e.step_index,
        e.last_step_at,
        e.next_due_at,
        e.ended_at,
        e.exit_reason.value if e.exit_reason is not None else None,
    )
    return enrolment_id


async def update_enrolment(conn: asyncpg.Connection, enrolment_id: int, e: Enrolment) -> None:
    await conn.execute(
        UPDATE_ENROLMENT,
        enrolment_id,
        e.status.value,
        e.step_index,
        e.last_step_at,
        e.next_due_at,
        e.ended_at,
        e.exit_reason.value if e.exit_reason is not None else None,
    )


@dataclass(frozen=True)
class ChangeResult:
    """What a batch of segment changes did to journeys (for metrics and tests)."""

    entered: int = 0
    exited: int = 0
    ignored: int = 0


async def apply_segment_changes(
    conn: asyncpg.Connection, shop_id: int, changes: Iterable[SegmentChange], now: datetime
) -> ChangeResult:
    """Decide each change for every journey of its segment and write the decisions, in the
    caller's transaction. Changes are applied in seq order, so a batch holding a customer's
    entry and exit ends as the stream says."""
    entered = exited = ignored = 0
    by_segment: dict[str, Sequence[asyncpg.Record]] = {}
    for change in sorted(changes, key=lambda c: c.seq):
        journeys = by_segment.get(change.segment_handle)
        if journeys is None:
            journeys = await conn.fetch(JOURNEYS_OF_SEGMENT, shop_id, change.segment_handle)
            by_segment[change.segment_handle] = journeys
        for row in journeys:
            journey_id = row["id"]
            seen = await conn.fetchval(SEEN_FOR_UPDATE, journey_id, change.customer_id)
            latest_row = await conn.fetchrow(LATEST_ENROLMENT, journey_id, change.customer_id)
            latest = enrolment_from_row(latest_row) if latest_row is not None else None
            # An active enrolment is decided by the version it entered with; an entry by the
            # current version.
            version = (
                latest.enrolment.journey_version
                if latest is not None and latest.enrolment.active
                else row["current_version"]
            )
            journey = await load_journey(conn, shop_id, journey_id, version, row["enabled"])
            outcome = on_segment_change(
                journey, latest.enrolment if latest else None, change, now, seen
            )
            if outcome.seen_seq is not None and outcome.seen_seq != seen:
                await conn.execute(UPSERT_SEEN, journey_id, change.customer_id, outcome.seen_seq)
            decision = outcome.decision
            if isinstance(decision, Exit) and latest is not None:
                await update_enrolment(conn, latest.id, decision.enrolment)
                exited += 1
            elif isinstance(decision, Enter):
                await insert_enrolment(conn, shop_id, decision.enrolment)
                entered += 1
            else:
                ignored += 1
    return ChangeResult(entered, exited, ignored)


async def record_conversion(
    conn: asyncpg.Connection,
    enrolment_id: int,
    order_id: int,
    placed_at: datetime,
    revenue: Decimal,
) -> None:
    """Count an order for an enrolment's lift, once however often it is replayed."""
    await conn.execute(INSERT_CONVERSION, enrolment_id, order_id, placed_at, revenue)


LOCK_CUSTOMER = "SELECT 1 FROM customers WHERE shop_id = $1 AND customer_id = $2 FOR UPDATE"

INSERT_OVERRIDE = """
INSERT INTO consent_overrides (shop_id, customer_id, unsubscribed_at, sync_due_at)
VALUES ($1, $2, $3, $3)
ON CONFLICT (shop_id, customer_id) DO NOTHING
"""


async def unsubscribe(
    conn: asyncpg.Connection, shop_id: int, customer_id: int, now: datetime
) -> int:
    """Record a one-click unsubscribe (queued for Shopify) and end the customer's enrolments
    whose journeys exit on it; return how many ended. Idempotent: a second click changes
    nothing more. Call in a transaction. A customer erased since the email was sent (its
    link still works in its mailbox) is left erased: nothing is recorded."""
    key = (shop_id, customer_id)
    await privacy.lock_customers(conn, [key])
    if key in (await privacy.erased_among(conn, [key]))[0]:
        return 0
    # The customer row is locked so a send being decided either saw this or waits for it.
    await conn.fetchval(LOCK_CUSTOMER, shop_id, customer_id)
    await conn.execute(INSERT_OVERRIDE, shop_id, customer_id, now)
    ended = 0
    for row in await conn.fetch(ACTIVE_OF_CUSTOMER, shop_id, customer_id):
        stored = enrolment_from_row(row)
        journey = await journey_for(conn, stored)
        decision = on_unsubscribe(journey, stored.enrolment, now)
        if isinstance(decision, Exit):
            await update_enrolment(conn, stored.id, decision.enrolment)
            ended += 1
    return ended


async def apply_order(
    conn: asyncpg.Connection, shop_id: int, order: OrderPlaced, now: datetime
) -> int:
    """Count an order for the customer's enrolments (one per journey: the latest entered
    before it) and end those whose goal it is; return how many conversions it made. Safe to
    replay: a conversion is keyed by (enrolment, order)."""
    rows = await conn.fetch(ENROLMENTS_OF_CUSTOMER, shop_id, order.customer_id)
    by_journey: dict[int, list[StoredEnrolment]] = {}
    for row in rows:
        stored = enrolment_from_row(row)
        by_journey.setdefault(stored.enrolment.journey_id, []).append(stored)
    counted = 0
    for stored_list in by_journey.values():
        ids = {id(s.enrolment): s for s in stored_list}
        chosen = enrolment_for_order([s.enrolment for s in stored_list], order.placed_at)
        if chosen is None:
            continue
        stored = ids[id(chosen)]
        journey = await journey_for(conn, stored)
        outcome = on_order(journey, chosen, order, now)
        if outcome.conversion is not None:
            await record_conversion(
                conn, stored.id, order.order_id, order.placed_at, outcome.conversion.revenue
            )
            counted += 1
        if outcome.exit is not None:
            await update_enrolment(conn, stored.id, outcome.exit.enrolment)
    return counted


JOURNEYS_OF_SHOP = """
SELECT j.id, j.handle, j.name, j.enabled, j.current_version, j.created_at, j.updated_at,
       v.definition::text AS definition,
       (SELECT jsonb_object_agg(
            t.step_key, jsonb_build_object('subject', t.subject, 'html', t.html, 'text', t.text))
        FROM journey_templates t WHERE t.journey_id = j.id)::text AS templates
FROM journeys j JOIN journey_versions v ON v.journey_id = j.id AND v.version = j.current_version
WHERE j.shop_id = $1 AND ($2::bigint IS NULL OR j.id = $2)
ORDER BY j.id
"""
JOURNEY_FOR_UPDATE = """
SELECT id, current_version FROM journeys WHERE shop_id = $1 AND id = $2 FOR UPDATE
"""
HANDLE_TAKEN = "SELECT 1 FROM journeys WHERE shop_id = $1 AND handle = $2 AND id <> $3"
UPDATE_JOURNEY = """
UPDATE journeys
SET handle = $2, name = $3, enabled = $4, trigger_segment = $5, current_version = $6,
    updated_at = $7
WHERE id = $1
"""
DELETE_JOURNEY = "DELETE FROM journeys WHERE shop_id = $1 AND id = $2"

STATS = """
WITH per AS (
    SELECT e.grp, e.state,
        (SELECT count(*) FROM journey_sends s
         WHERE s.enrolment_id = e.id AND s.state IN ('sent', 'suppressed')) AS sent,
        (SELECT count(*) FROM journey_sends s
         WHERE s.enrolment_id = e.id AND s.deferrals > 0) AS deferred,
        (SELECT coalesce(sum(c.revenue), 0) FROM journey_conversions c
         WHERE c.enrolment_id = e.id) AS revenue,
        EXISTS (SELECT 1 FROM journey_conversions c WHERE c.enrolment_id = e.id) AS converted
    FROM journey_enrolments e
    WHERE e.journey_id = $1
)
SELECT grp, count(*) AS entered, coalesce(sum(sent), 0) AS sent,
       coalesce(sum(deferred), 0) AS deferred,
       count(*) FILTER (WHERE state = 'exited') AS exited,
       count(*) FILTER (WHERE converted) AS converted,
       coalesce(sum(revenue), 0) AS revenue,
       coalesce(sum(revenue * revenue), 0) AS revenue_squares
FROM per GROUP BY grp
"""

CUSTOMER_ENROLMENTS = """
SELECT e.id, j.id AS journey_id, j.handle, e.journey_version, e.grp, e.state, e.entered_at,
       e.step_index, e.next_due_at, e.exited_at, e.exit_reason,
       (SELECT count(*) FROM journey_sends s
        WHERE s.enrolment_id = e.id AND s.state = 'sent') AS steps_sent
FROM journey_enrolments e JOIN journeys j ON j.id = e.journey_id
WHERE e.shop_id = $1 AND e.customer_id = $2
ORDER BY e.entered_at, e.id
"""


class HandleTakenError(ValueError):
    """Another journey of the shop has this handle."""


async def update_journey(
    conn: asyncpg.Connection, shop_id: int, journey_id: int, edited: JourneyIn, now: datetime
) -> int | None:
    """Save an edit: a new version when it changes the path (model.needs_new_version), else
    only the journey's own fields. The journey's current version after it; None when the shop
    has no such journey. HandleTakenError when the handle belongs to another journey."""
    row = await conn.fetchrow(JOURNEY_FOR_UPDATE, shop_id, journey_id)
    if row is None:
        return None
    if await conn.fetchval(HANDLE_TAKEN, shop_id, edited.handle, journey_id) is not None:
        raise HandleTakenError(edited.handle)
    version: int = row["current_version"]
    current = await load_journey(conn, shop_id, journey_id, version, edited.enabled)
    candidate = edited.to_journey(journey_id=journey_id, shop_id=shop_id, version=version)
    if needs_new_version(current, candidate):
        version += 1
        candidate = replace(candidate, version=version)
        await conn.execute(
            INSERT_VERSION, journey_id, version, dumps(journey_definition(candidate)), now
        )
    await save_templates(conn, journey_id, edited.own_templates(), now)
    await conn.execute(
        UPDATE_JOURNEY,
        journey_id,
        edited.handle,
        edited.name,
        edited.enabled,
        edited.trigger.segment,
        version,
        now,
    )
    return version


async def delete_journey(conn: asyncpg.Connection, shop_id: int, journey_id: int) -> bool:
    """Remove a journey with its versions, enrolments and records; False if not the shop's."""
    status = await conn.execute(DELETE_JOURNEY, shop_id, journey_id)
    return bool(status.endswith(" 1"))


def stored_definition(row: asyncpg.Record) -> dict[str, Any]:
    """The current definition as the API shows it, with the journey's own current fields and
    each own-template step's stored template as its `own_template` in place of "own"."""
    definition: dict[str, Any] = loads_json(row["definition"])
    definition.update(handle=row["handle"], name=row["name"], enabled=row["enabled"])
    templates: dict[str, Any] = loads_json(row["templates"]) if row["templates"] else {}
    for step in definition["steps"]:
        if step["template"] == OWN_TEMPLATE and step["key"] in templates:
            own = templates[step["key"]]
            del step["template"]
            step["own_template"] = {k: v for k, v in own.items() if v is not None}
    return definition


ERASE_ENROLMENTS = "DELETE FROM journey_enrolments WHERE shop_id = $1 AND customer_id = $2"
ERASE_SEEN = """
DELETE FROM journey_seen s USING journeys j
WHERE s.journey_id = j.id AND j.shop_id = $1 AND s.customer_id = $2
"""
ERASE_OVERRIDE = "DELETE FROM consent_overrides WHERE shop_id = $1 AND customer_id = $2"


async def redact_customer(conn: asyncpg.Connection, shop_id: int, customer_id: int) -> int:
    """customers/redact: every enrolment ends (machine.on_redact) by being erased, with its
    sends and conversions, the seen seqs and the unsubscribe record; return the enrolments
    erased. The customer is gone from Shopify too, so nothing is left to mail or to write
    back. Call in a transaction."""
    await conn.fetchval(LOCK_CUSTOMER, shop_id, customer_id)
    status = await conn.execute(ERASE_ENROLMENTS, shop_id, customer_id)
    await conn.execute(ERASE_SEEN, shop_id, customer_id)
    await conn.execute(ERASE_OVERRIDE, shop_id, customer_id)
    return int(status.split()[-1])
