"""The journey send scheduler: decides due enrolments' next steps and hands their email to SMTP,
at most once per step.

A round takes due enrolments with FOR UPDATE SKIP LOCKED (replicas share the queue), builds
each customer's context from the database (facts, consent with our one-click unsubscribes,
membership of the trigger segment, local zone, recent sends), asks the step machine, and
writes its decision in the same transaction. A Send is written as a `sending` record with its
fixed Message-ID and committed before SMTP is spoken to (sender.py's design note); after SMTP
the record becomes `sent`, `failed`, `unknown` (maybe delivered: never re-sent) or `deferred`
with a retry time (surely not delivered). A `sending` record whose lease ran out died
mid-send: it is resolved with resolve_interrupted_send, without sending.
"""

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol

import asyncpg

from services.common.backoff import Backoff
from services.common.settings import Settings
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.runtime.health import ComponentHealth
from services.segmenter.storage.rows import facts_from_row, profile_attribute
from services.tagger.email.compose import address_domain, compose_email, message_id_for
from services.tagger.email.metrics import EmailMetrics
from services.tagger.email.sender import (
    MessageLookup,
    SendOutcome,
    SendResult,
    resolve_interrupted_send,
)
from services.tagger.email.templates import (
    SHIPPED_TEMPLATE_FILES,
    EmailContext,
    EmailTemplates,
    TemplateError,
    TemplateSource,
)
from services.tagger.email.unsubscribe import KeyRing, issue_token, unsubscribe_url
from services.tagger.journeys.enrolment import (
    CustomerContext,
    Defer,
    Done,
    Exit,
    Send,
    Skip,
    StepDecision,
    Suppress,
)
from services.tagger.journeys.machine import next_step
from services.tagger.journeys.model import OWN_TEMPLATE, Journey, Step
from services.tagger.journeys.timing import SendCap, customer_zone, load_zone, send_time
from services.tagger.journeys_store import (
    StoredEnrolment,
    enrolment_from_row,
    journey_for,
    own_template,
    update_enrolment,
)
from services.tagger.rounds import run_rounds

logger = logging.getLogger(__name__)

# A step whose SMTP server kept answering "try later" this often is given up (failed).
MAX_SMTP_ATTEMPTS = 8

TAKE_DUE = """
SELECT id, shop_id, journey_id, journey_version, customer_id, grp, state, entered_at,
       entry_seq, step_index, last_step_at, next_due_at, exited_at, exit_reason
FROM journey_enrolments
WHERE state = 'active' AND next_due_at <= $1
ORDER BY next_due_at
LIMIT $2
FOR UPDATE SKIP LOCKED
"""

# The customer row is locked (shared) so a one-click unsubscribe, which locks it for update,
# is either seen by this decision or waits for its commit.
# FOR UPDATE, not SHARE: two replicas deciding two journeys' steps of one customer must not
# both read the same recent sends (the cap), and a one-click unsubscribe waits on it too.
CUSTOMER = "SELECT * FROM customers WHERE shop_id = $1 AND customer_id = $2 FOR UPDATE"
LOCK_CUSTOMER = "SELECT 1 FROM customers WHERE shop_id = $1 AND customer_id = $2 FOR UPDATE"
SKIP_SENDING = """
UPDATE journey_sends SET state = 'skipped', error = $2, lease_until = NULL
WHERE id = $1 AND state = 'sending'
"""
RETRY_LATER = "UPDATE journey_sends SET retry_at = $2 WHERE id = $1"
UNSUBSCRIBED = "SELECT 1 FROM consent_overrides WHERE shop_id = $1 AND customer_id = $2"
SHOP = "SELECT domain, iana_timezone FROM shops WHERE id = $1"
IN_SEGMENT = """
SELECT EXISTS (
    SELECT 1 FROM memberships m JOIN segments s ON s.id = m.segment_id
    WHERE s.shop_id = $1 AND s.handle = $2 AND m.customer_id = $3
)
"""
RECENT_SENDS = """
SELECT coalesce(s.sent_at, s.decided_at) AS at
FROM journey_sends s JOIN journey_enrolments e ON e.id = s.enrolment_id
WHERE e.shop_id = $1 AND e.customer_id = $2 AND s.state IN ('sending', 'sent', 'unknown')
  AND coalesce(s.sent_at, s.decided_at) > $3
"""

# A decided step's record. An existing row is overwritten only while it is `deferred` (a
# step held back, or an SMTP retry): a step once sending, sent or settled is never redone.
RECORD_STEP = """
INSERT INTO journey_sends (
    enrolment_id, step_index, message_id, state, deferrals, lease_until, decided_at, error
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (enrolment_id, step_index) DO UPDATE
SET state = excluded.state, deferrals = journey_sends.deferrals + excluded.deferrals,
    lease_until = excluded.lease_until, decided_at = excluded.decided_at,
    error = excluded.error, retry_at = NULL
WHERE journey_sends.state = 'deferred'
RETURNING id
"""

FINISH_SEND = """
UPDATE journey_sends
SET state = $2, sent_at = $3, error = $4, retry_at = $5, lease_until = NULL,
    deferrals = deferrals + $6, smtp_attempts = smtp_attempts + 1
WHERE id = $1 AND state = 'sending'
"""

TAKE_RETRIES = """
SELECT s.id AS send_id, s.step_index AS send_step, s.smtp_attempts, e.id, e.shop_id, e.journey_id,
       e.journey_version, e.customer_id, e.grp, e.state, e.entered_at, e.entry_seq,
       e.step_index, e.last_step_at, e.next_due_at, e.exited_at, e.exit_reason
FROM journey_sends s JOIN journey_enrolments e ON e.id = s.enrolment_id
WHERE s.state = 'deferred' AND s.retry_at <= $1
ORDER BY s.retry_at
LIMIT $2
FOR UPDATE OF s SKIP LOCKED
"""

RETRY_SENDING = """
UPDATE journey_sends SET state = 'sending', lease_until = $2, retry_at = NULL WHERE id = $1
"""
RETRY_SKIPPED = """
UPDATE journey_sends SET state = 'skipped', retry_at = NULL, error = $2 WHERE id = $1
"""

# A stop between hand-overs: the round's emails not yet given to SMTP are surely not
# delivered, so they wait as retries due at once (same Message-ID), not as `sending` records a
# later process would have to settle as `unknown` and never send.
NOT_HANDED_OVER = """
UPDATE journey_sends SET state = 'deferred', retry_at = $2, lease_until = NULL,
    error = 'not handed over: the tagger was stopping'
WHERE id = ANY($1::bigint[]) AND state = 'sending'
"""

TAKE_INTERRUPTED = """
SELECT id, message_id FROM journey_sends
WHERE state = 'sending' AND lease_until < $1
ORDER BY lease_until
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
RESOLVE_INTERRUPTED = """
UPDATE journey_sends SET state = $2, lease_until = NULL, sent_at = $3, error = $4 WHERE id = $1
"""


class Sender(Protocol):
    async def send(self, message: EmailMessage) -> SendResult:
        """Hand one composed message to SMTP."""
        ...


@dataclass(frozen=True)
class Outgoing:
    """An email whose `sending` record is committed, waiting for SMTP."""

    send_id: int
    journey: str
    step_index: int
    # Earlier handovers of this email to SMTP (each answered "try later").
    smtp_attempts: int
    message: EmailMessage
    shop_id: int
    customer_id: int
    marketing: bool


@dataclass(frozen=True)
class Recipient:
    """What an email shows beyond the step machine's context: the shop and the customer's name."""

    domain: str | None
    first_name: str | None


class JourneyScheduler:
    """The send loop beside the tag reconciler; `poke()` makes it look at the queue now."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        sender: Sender,
        health: ComponentHealth,
        *,
        lookup: MessageLookup | None = None,
        metrics: EmailMetrics | None = None,
        templates: EmailTemplates | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._sender = sender
        self._health = health
        self._lookup = lookup
        self._metrics = metrics
        self._templates = templates or EmailTemplates()
        self._clock = clock
        self._keys = KeyRing.parse(settings.require_unsubscribe_keys())
        self._base_url = settings.require_unsubscribe_base_url()
        self._domain = address_domain(settings.email_from_address)
        self._cap = SendCap(
            settings.journey_cap_emails, timedelta(hours=settings.journey_cap_window_hours)
        )
        self._backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
        # Longer than every SMTP step timing out once (the settings check it): a record still
        # `sending` after that belongs to a process that died.
        self._lease = timedelta(seconds=settings.journey_send_lease_seconds)
        point, _, count = (settings.crash_at or "").partition(":")
        self._crash_point = point or None
        self._crash_after = int(count.partition(":")[0] or 1)
        self._wake = asyncio.Event()
        self._stop: asyncio.Event | None = None

    def poke(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until `stop` is set: the email being handed over is finished first, the
        rest of its round put back for the next round (of any process)."""
        self._stop = stop
        await run_rounds(
            self.round, stop, self._health, self._settings.tagger_interval_seconds, self._wake
        )

    async def round(self) -> bool:
        """Resolve interrupted sends, retry due SMTP retries, decide due enrolments and send;
        True if there was anything to do."""
        now = self._clock()
        batch = self._settings.tagger_batch_size
        resolved = await self.resolve_interrupted(now)
        outgoing: list[Outgoing] = []
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                retries = await conn.fetch(TAKE_RETRIES, now, batch)
                for row in retries:
                    if (email := await self._retry(conn, row, now)) is not None:
                        outgoing.append(email)
            async with conn.transaction():
                due = await conn.fetch(TAKE_DUE, now, batch)
                for row in due:
                    if (
                        email := await self._decide(conn, enrolment_from_row(row), now)
                    ) is not None:
                        outgoing.append(email)
        for index, email in enumerate(outgoing):
            if self._stop is not None and self._stop.is_set():
                await self._put_back(outgoing[index:])
                break
            result = await self._hand_over(email)
            if result is None:
                continue
            self._crash_if_told("after_smtp")
            await self._finish(email, result)
        return bool(resolved or retries or due)

    async def _put_back(self, emails: list[Outgoing]) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(NOT_HANDED_OVER, [e.send_id for e in emails], self._clock())
        logger.info("journey emails put back at stop", extra={"count": len(emails)})

    async def _hand_over(self, email: Outgoing) -> SendResult | None:
        """SMTP, with the customer's row locked and the one-click override checked under it:
        an unsubscribe confirmed before the handover stops it (None: recorded skipped), one
        coming during it waits until the email is handed over."""
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await conn.fetchval(LOCK_CUSTOMER, email.shop_id, email.customer_id)
                if email.marketing and await conn.fetchval(
                    UNSUBSCRIBED, email.shop_id, email.customer_id
                ):
                    await conn.execute(SKIP_SENDING, email.send_id, "unsubscribed")
                    self._count(email.journey, email.step_index, "deferred")
                    return None
                return await self._sender.send(email.message)

    async def resolve_interrupted(self, now: datetime) -> int:
        """Settle `sending` records whose lease ran out, without sending: `sent` where the SMTP
        side holds the Message-ID, else `unknown`."""
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(TAKE_INTERRUPTED, now, self._settings.tagger_batch_size)
                for row in rows:
                    state = resolve_interrupted_send(row["message_id"], self._lookup)
                    error = None if state == "sent" else "interrupted; not re-sent"
                    sent_at = now if state == "sent" else None
                    await conn.execute(RESOLVE_INTERRUPTED, row["id"], state, sent_at, error)
        if rows:
            logger.warning("resolved interrupted journey sends", extra={"count": len(rows)})
        return len(rows)

    async def _context(
        self, conn: asyncpg.Connection, stored: StoredEnrolment, journey: Journey, now: datetime
    ) -> tuple[CustomerContext, Recipient]:
        customer = stored.enrolment.customer_id
        shop = await conn.fetchrow(SHOP, stored.shop_id)
        row = await conn.fetchrow(CUSTOMER, stored.shop_id, customer)
        facts = facts_from_row(row) if row is not None else CustomerFacts(stored.shop_id, customer)
        consent: str | None = "subscribed" if facts.accepts_email_marketing else "not_subscribed"
        if row is None or row["deleted"]:
            consent = None
        if await conn.fetchval(UNSUBSCRIBED, stored.shop_id, customer) is not None:
            consent = "unsubscribed"
        in_segment = await conn.fetchval(
            IN_SEGMENT, stored.shop_id, journey.trigger_segment, customer
        )
        recent = await conn.fetch(RECENT_SENDS, stored.shop_id, customer, now - self._cap.window)
        zone = customer_zone(
            facts.country_code, facts.province_code, self._shop_zone(shop and shop["iana_timezone"])
        )
        context = CustomerContext(
            facts=facts,
            email_consent=consent,
            in_trigger_segment=bool(in_segment),
            zone=zone,
            recent_sends=tuple(r["at"] for r in recent),
            cap=self._cap,
        )
        first_name = profile_attribute(row, "first_name") if row is not None else None
        return context, Recipient(shop["domain"] if shop else None, first_name)

    def _shop_zone(self, name: str | None) -> str:
        """The shop's zone as Shopify gave it at connect time, else the configured default
        (also for a name this machine's zone database does not know)."""
        if name:
            try:
                load_zone(name)
            except ValueError:
                logger.warning("the shop's time zone is unknown here; using the default")
            else:
                return name
        return self._settings.journey_default_timezone

    async def _decide(
        self, conn: asyncpg.Connection, stored: StoredEnrolment, now: datetime
    ) -> Outgoing | None:
        journey = await journey_for(conn, stored)
        context, recipient = await self._context(conn, stored, journey, now)
        decision = next_step(journey, stored.enrolment, context, now)
        return await self._apply(conn, stored, journey, decision, context, recipient, now)

    async def _apply(
        self,
        conn: asyncpg.Connection,
        stored: StoredEnrolment,
        journey: Journey,
        decision: StepDecision,
        context: CustomerContext,
        recipient: Recipient,
        now: datetime,
    ) -> Outgoing | None:
        if not isinstance(decision, Done) or decision.enrolment != stored.enrolment:
            await update_enrolment(conn, stored.id, decision.enrolment)
        # The step decided (or held back) is the one the enrolment stood at.
        step_index = stored.enrolment.step_index
        message_id = message_id_for(stored.shop_id, stored.id, step_index, self._domain)
        if isinstance(decision, Suppress):
            await self._record(conn, stored.id, decision.step_index, message_id, "suppressed", now)
        elif isinstance(decision, Skip):
            await self._record(
                conn,
                stored.id,
                decision.step_index,
                message_id,
                "skipped",
                now,
                error=decision.reason.value,
            )
        elif isinstance(decision, Defer) and decision.reason.counts_as_deferral:
            await self._record(
                conn, stored.id, step_index, message_id, "deferred", now, deferrals=1
            )
            self._count(journey.handle, step_index, "deferred")
        elif isinstance(decision, Send):
            return await self._prepare(
                conn,
                stored,
                journey,
                decision.step,
                decision.step_index,
                message_id,
                context,
                recipient,
                now,
            )
        elif isinstance(decision, Exit):
            logger.debug("journey exit", extra={"reason": decision.reason.value})
        return None

    async def _prepare(
        self,
        conn: asyncpg.Connection,
        stored: StoredEnrolment,
        journey: Journey,
        step: Step,
        step_index: int,
        message_id: str,
        context: CustomerContext,
        recipient: Recipient,
        now: datetime,
        *,
        send_id: int | None = None,
        smtp_attempts: int = 0,
    ) -> Outgoing | None:
        """Compose the step's email and commit its `sending` record (with the caller's
        transaction); a step that cannot be composed is recorded `failed`, not sent."""
        try:
            source = None
            if step.template == OWN_TEMPLATE:
                # The journey's current email for this step (not versioned: edits reach
                # in-flight enrolments).
                row = await own_template(conn, stored.enrolment.journey_id, step.key)
                if row is None:
                    raise TemplateError(f"step {step.key!r} has no email of its own stored")
                source = TemplateSource(row["subject"], row["text"], row["html"])
            message = self._compose(stored, step, message_id, context, recipient, now, source)
        except (TemplateError, KeyError, ValueError) as exc:
            error = f"{type(exc).__name__}: cannot compose: {exc}"[:300]
            if send_id is None:
                await self._record(
                    conn, stored.id, step_index, message_id, "failed", now, error=error
                )
            else:
                await conn.execute(RETRY_SKIPPED, send_id, error)
            self._count(journey.handle, step_index, "failed")
            logger.warning("journey email not composed", extra={"journey": journey.handle})
            return None
        lease = now + self._lease
        if send_id is None:
            send_id = await self._record(
                conn, stored.id, step_index, message_id, "sending", now, lease=lease
            )
            if send_id is None:
                return None  # recorded before: never sent twice
        else:
            await conn.execute(RETRY_SENDING, send_id, lease)
        return Outgoing(
            send_id,
            journey.handle,
            step_index,
            smtp_attempts,
            message,
            stored.shop_id,
            stored.enrolment.customer_id,
            step.marketing,
        )

    def _compose(
        self,
        stored: StoredEnrolment,
        step: Step,
        message_id: str,
        context: CustomerContext,
        recipient: Recipient,
        now: datetime,
        source: TemplateSource | None = None,
    ) -> EmailMessage:
        """The step's email: its own template (`source`) or the shipped one its key names."""
        address = context.facts.email
        if not address:
            raise ValueError("the customer has no email address")
        token = issue_token(self._keys, stored.shop_id, stored.enrolment.customer_id)
        link = unsubscribe_url(self._base_url, token)
        shop_name = (recipient.domain or "").removesuffix(".myshopify.com") or "our shop"
        email_context = EmailContext(
            shop_name=shop_name,
            unsubscribe_url=link,
            first_name=recipient.first_name,
            coupon_code=self._settings.journey_coupon_code,
            top_product_type=context.facts.top_product_type,
        )
        if source is not None:
            rendered = self._templates.render_source(source, email_context, name=step.key)
        else:
            key = SHIPPED_TEMPLATE_FILES.get(step.template, step.template)
            rendered = self._templates.render(key, email_context)
        return compose_email(
            rendered,
            from_address=self._settings.email_from_address,
            from_name=shop_name,
            to_address=address,
            message_id=message_id,
            unsubscribe_url=link,
            date=now,
            unsubscribe_mailto=self._settings.unsubscribe_mailto,
        )

    async def _retry(
        self, conn: asyncpg.Connection, row: asyncpg.Record, now: datetime
    ) -> Outgoing | None:
        """A step SMTP answered "try later" for: consent and the address re-checked now."""
        stored = enrolment_from_row(row)
        if row["state"] != "active":
            # The customer left the journey since SMTP asked us to try later.
            await conn.execute(RETRY_SKIPPED, row["send_id"], row["exit_reason"] or "exited")
            return None
        journey = await journey_for(conn, stored)
        context, recipient = await self._context(conn, stored, journey, now)
        step = journey.steps[row["send_step"]]
        if step.marketing and context.email_consent != "subscribed":
            await conn.execute(RETRY_SKIPPED, row["send_id"], "no_marketing_consent")
            return None
        # A retry keeps the send window and the cap like a first send: it waits them out.
        allowed, _ = send_time(
            now, context.zone, journey.quiet_hours, context.cap, context.recent_sends
        )
        if allowed > now:
            await conn.execute(RETRY_LATER, row["send_id"], allowed)
            return None
        message_id = message_id_for(stored.shop_id, stored.id, row["send_step"], self._domain)
        return await self._prepare(
            conn,
            stored,
            journey,
            step,
            row["send_step"],
            message_id,
            context,
            recipient,
            now,
            send_id=row["send_id"],
            smtp_attempts=row["smtp_attempts"],
        )

    async def _record(
        self,
        conn: asyncpg.Connection,
        enrolment_id: int,
        step_index: int,
        message_id: str,
        state: str,
        now: datetime,
        *,
        deferrals: int = 0,
        lease: datetime | None = None,
        error: str | None = None,
    ) -> int | None:
        send_id: int | None = await conn.fetchval(
            RECORD_STEP, enrolment_id, step_index, message_id, state, deferrals, lease, now, error
        )
        return send_id

    async def _finish(self, email: Outgoing, result: SendResult) -> None:
        now = self._clock()
        retry_at = None
        more = 0
        if result.outcome is SendOutcome.ACCEPTED:
            state, sent_at, error = "sent", now, None
        elif result.should_retry and email.smtp_attempts + 1 < MAX_SMTP_ATTEMPTS:
            delay = self._backoff.delay(email.smtp_attempts + 1)
            state, sent_at, error = "deferred", None, result.detail
            retry_at, more = now + timedelta(seconds=delay), 1
        elif result.maybe_delivered:
            state, sent_at, error = "unknown", None, result.detail
        else:
            state, sent_at, error = "failed", None, result.detail
        async with self._pool.acquire() as conn:
            await conn.execute(FINISH_SEND, email.send_id, state, sent_at, error, retry_at, more)
        if self._metrics is not None:
            self._metrics.count_result(email.journey, email.step_index + 1, result)

    def _crash_if_told(self, point: str) -> None:
        """The crash test hook (SEGFLOW_CRASH_AT=after_smtp:N): die as kill -9 would, after
        SMTP answered and before the answer is recorded, at the N-th send."""
        if point != self._crash_point:
            return
        self._crash_after -= 1
        if self._crash_after > 0:
            return
        logger.warning("crashing at %s as SEGFLOW_CRASH_AT asks", point)
        os.kill(os.getpid(), signal.SIGKILL)

    def _count(self, journey: str, step_index: int, outcome: Any) -> None:
        if self._metrics is not None:
            self._metrics.count(journey, step_index + 1, outcome)
