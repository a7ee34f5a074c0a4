"""Brings customers' managed tags on Shopify in line with their memberships.

It leases customers from `tag_work` (SKIP LOCKED, so replicas share the queue), reads what
their segments want and what the ledger says, writes the intended ledger entries first (so a
crash is followed by the same writes again, which Shopify's idempotent tag mutations make
harmless), then sends at most one tagsAdd and one tagsRemove per customer, and records what
Shopify accepted.

Each shop's lane (live, bulk) has a task of its own, started by the run loop when the lane has
work and ended when it finds none: it takes one batch of its shop at a time (its in-flight
work is bounded by the batch size), and its waits on Shopify (pacing from throttleStatus, a
slow answer, a bulk operation) hold nobody else, not even the same shop's other lane. The run
loop only dispatches and reports the backlog. On stop no new batch starts; the batches in hand
are finished, nothing is cancelled half-written; a bulk operation still running on Shopify is
not waited for but recorded, as when polling gives up (below), and read by the next poll.

Failures never drop work: Shopify unavailable (throttled beyond the client's bound, 5xx,
timeouts) puts the customer back with backoff; after `tagger_max_attempts` it is parked
(counted, listed by the API) and retried every `tagger_parked_retry_seconds`. Refused input
(userErrors, an unknown customer) is retried the same way, since a merchant may fix it.

Bulk work (an import, a backfill) waits in its own lane; from `tagger_bulk_threshold`
customers of one shop it goes through one bulk mutation per direction, whose failed lines
return to the single path. A lease is renewed while its holder waits on Shopify, so bulk leases
can be short: a reconciler that dies holding a bulk batch lets go within one
`tagger_bulk_lease_seconds`, and a live change of one of its customers waits no longer. A bulk
operation still running when polling gives up (`tagger_bulk_poll_timeout_seconds`) is recorded
(`tag_bulk_operations`), its customers wait in the bulk lane, and a later poll reads its result
and records its lines, so nothing is sent twice and no customer stays pending.
"""

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import asyncpg

from services.common import privacy
from services.common.settings import Settings
from services.common.shopify import tag_key
from services.segmenter.runtime.faults import infrastructure_fault
from services.segmenter.runtime.health import ComponentHealth
from services.tagger import storage
from services.tagger.connections import ShopClients
from services.tagger.metrics import TaggerMetrics
from services.tagger.rounds import run_rounds
from services.tagger.shopify.client import AdminClient
from services.tagger.shopify.errors import (
    ShopifyAuthError,
    ShopifyBulkPending,
    ShopifyError,
    ShopifyUnavailable,
)
from services.tagger.shopify.models import BulkResult, TagKind
from services.tagger.tags import (
    Entry,
    Plan,
    State,
    applied,
    needs_shopify_tags,
    plan,
    wanted_tags,
)

logger = logging.getLogger(__name__)

Key = storage.Key
# A shop's lane: (shop id, bulk?).
Lane = tuple[int, bool]


@dataclass
class _Outcome:
    done: list[storage.Work]
    retry: list[tuple[storage.Work, str]]
    entries: dict[Key, dict[str, Entry | None]]
    # Customers waiting on a late bulk operation, and the operations to remember.
    later: list[storage.Work] = field(default_factory=list)
    late: list[storage.LateBulk] = field(default_factory=list)


class TagReconciler:
    """The tag reconciler loop; `poke()` makes it look at the queue now."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        clients: ShopClients,
        metrics: TaggerMetrics,
        health: ComponentHealth,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._clients = clients
        self._metrics = metrics
        self._health = health
        self._clock = clock
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._lanes: dict[Lane, asyncio.Task[None]] = {}
        self._failure: BaseException | None = None
        self._halted = False
        # The run loop's stop: a bulk operation being polled is left to a later poll.
        self._stop: asyncio.Event | None = None

    def poke(self) -> None:
        """New work was queued: look now rather than at the next interval."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Reconcile until `stop` is set; the shop tasks finish the batches in hand first (a
        bulk operation still running is recorded, to be read by the next poll)."""
        self._stop = stop
        try:
            await run_rounds(
                lambda: self._dispatch(stop),
                stop,
                self._health,
                self._settings.tagger_interval_seconds,
                self._wake,
            )
        finally:
            self._halted = True  # also when the loop itself failed: no new batch starts
            await asyncio.gather(*self._lanes.values(), return_exceptions=True)
        if self._failure is not None:
            raise self._failure

    async def _dispatch(self, stop: asyncio.Event) -> bool:
        """Start a task for every lane with work due that has none; report the backlog."""
        if self._failure is not None:
            raise self._failure  # a bug in a shop task: stop as run_rounds does for its own
        async with self._pool.acquire() as conn:
            lanes = await storage.due_lanes(conn, self._clock())
        for lane in sorted(lanes - set(self._lanes)):
            self._lanes[lane] = asyncio.create_task(
                self._lane_task(lane, stop),
                name=f"tagger-shop-{lane[0]}-{'bulk' if lane[1] else 'live'}",
            )
        await self._observe_backlog()
        return False

    async def _lane_task(self, lane: Lane, stop: asyncio.Event) -> None:
        try:
            while not (stop.is_set() or self._halted):
                if not await self.lane_batch(*lane):
                    return
        except Exception as exc:
            if infrastructure_fault(exc) is None:
                self._failure = exc
            else:
                # The database is gone for now: the run loop's next look reports it, and
                # starts the lane again once it answers (leases give the rows back).
                logger.warning("a shop's tag lane stopped", extra={"shop_id": lane[0]})
            self._wake.set()
        finally:
            self._lanes.pop(lane, None)

    async def round(self) -> bool:
        """One batch of every lane with work due, all at once, waited for (tests and tools);
        True if it found work (so the next pass comes at once)."""
        async with self._pool.acquire() as conn:
            lanes = await storage.due_lanes(conn, self._clock())
        found = await asyncio.gather(*(self.lane_batch(*lane) for lane in sorted(lanes)))
        await self._observe_backlog()
        return any(found)

    async def lane_batch(self, shop_id: int, bulk: bool) -> bool:
        """Take and reconcile one batch of a shop's lane; False when it had nothing due."""
        settings = self._settings
        if bulk and await self._late_bulk_guarded(shop_id):
            return False  # its customers wait for the operation Shopify still runs
        now = self._clock()
        size, seconds = (
            (settings.tagger_bulk_batch_size, settings.tagger_bulk_lease_seconds)
            if bulk
            else (settings.tagger_batch_size, settings.tagger_lease_seconds)
        )
        lease_until = now + timedelta(seconds=seconds)
        async with self._pool.acquire() as conn:
            works = await storage.take_shop_tag_work(conn, shop_id, bulk, now, size, lease_until)
        if not works:
            return False
        if not bulk:
            works = await self._wait_for_late_bulk(shop_id, works)
            if not works:
                return True
        done = asyncio.Event()
        renewing = asyncio.create_task(self._renew(works, seconds, lease_until, done))
        try:
            await self._shop(shop_id, works, bulk)
        finally:
            done.set()
            await renewing
        return True

    async def _wait_for_late_bulk(
        self, shop_id: int, works: list[storage.Work]
    ) -> list[storage.Work]:
        """The live work that may go ahead: a customer whose tags a late bulk operation still
        writes waits for it (it may land after anything sent now, and undo it); once it is
        read, its customers' work is due at once and finds the tags as it left them."""
        async with self._pool.acquire() as conn:
            pending = await storage.in_late_bulk(conn, shop_id, [w.customer_id for w in works])
            if not pending:
                return works
            waiting = [w for w in works if w.customer_id in pending]
            # Not before the next round either, so a lane never spins on work it must leave.
            soonest = self._clock() + timedelta(seconds=self._settings.tagger_interval_seconds)
            await storage.put_back(conn, waiting, max(soonest, min(pending.values())))
        return [w for w in works if w.customer_id not in pending]

    async def _renew(
        self, works: list[storage.Work], seconds: float, held: datetime, done: asyncio.Event
    ) -> None:
        """Keep the lease while the batch is in hand (every third of its length)."""
        while True:
            try:
                await asyncio.wait_for(done.wait(), seconds / 3)
                return
            except TimeoutError:
                pass
            until = self._clock() + timedelta(seconds=seconds)
            try:
                async with self._pool.acquire() as conn:
                    await storage.renew_lease(conn, works, held, until)
            except Exception as exc:
                if infrastructure_fault(exc) is None:
                    raise
                continue  # the lease may lapse; the finish's version check keeps it safe
            held = until

    async def _shop(self, shop_id: int, works: list[storage.Work], bulk: bool) -> None:
        try:
            await self._shop_work(shop_id, works, bulk)
        except Exception as exc:
            if infrastructure_fault(exc) is not None:
                raise
            # One shop's problem (a token that no longer opens, a bug on its data) must not
            # stop the others: its work goes back, with the reason shown.
            logger.warning("a shop's tag work failed", extra={"shop_id": shop_id})
            await self._finish(
                _Outcome([], [(w, f"{type(exc).__name__}: {exc}") for w in works], {})
            )

    async def _shop_work(self, shop_id: int, works: list[storage.Work], bulk: bool) -> None:
        client = await self._clients.get(shop_id)
        if client is None:
            # Not connected: nothing can be written. Connecting marks every member again.
            await self._finish(_Outcome(works, [], {}))
            return
        try:
            if bulk and len(works) >= self._settings.tagger_bulk_threshold:
                outcome = await self._reconcile_bulk(client, works)
            else:
                outcome = await self._reconcile(client, works)
        except ShopifyAuthError as exc:
            self._clients.forget(shop_id)
            outcome = _Outcome([], [(work, str(exc)) for work in works], {})
        await self._finish(outcome)

    async def _plans(
        self, client: AdminClient, works: Sequence[storage.Work], from_shopify: bool
    ) -> tuple[dict[Key, Plan], dict[Key, dict[str, Entry]]]:
        """Each customer's plan, with their ledgers (the intended entries written first)."""
        now = self._clock()
        keys = [work.key for work in works]
        async with self._pool.acquire() as conn:
            actions = await storage.wanted_actions(conn, keys)
            ledgers = await storage.ledgers(conn, keys)
            known = {} if from_shopify else await storage.known_tags(conn, keys)
        wanted = {key: wanted_tags(actions.get(key, [])) for key in keys}
        need = [key for key in keys if needs_shopify_tags(wanted[key], ledgers.get(key, {}))]
        current: Mapping[int, Sequence[str] | None] = {}
        if need and from_shopify:
            current = await client.customers_tags([key[1] for key in need])
        elif need:
            current = {key[1]: known.get(key, ()) for key in need}
        # A set: the loop below asks once per customer (a list made 100k customers quadratic).
        needed = set(need)
        plans: dict[Key, Plan] = {}
        for work in works:
            key = work.key
            # A customer Shopify does not show (yet) has no tags of the merchant's to keep;
            # if it does not exist at all, the write's userError puts the work back.
            tags = (current.get(key[1]) or ()) if key in needed else None
            plans[key] = plan(wanted[key], ledgers.get(key, {}), tags, now)
        intents = {key: dict(p.entries) for key, p in plans.items() if p.entries}
        if intents:
            async with self._pool.acquire() as conn:
                async with conn.transaction():
                    await storage.write_ledger(conn, intents)
        merged = {
            key: {k: v for k, v in {**ledgers.get(key, {}), **p.entries}.items() if v is not None}
            for key, p in plans.items()
        }
        return plans, merged

    async def _reconcile(self, client: AdminClient, works: list[storage.Work]) -> _Outcome:
        try:
            plans, ledgers = await self._plans(client, works, from_shopify=True)
        except ShopifyUnavailable as exc:
            return _Outcome([], [(work, str(exc)) for work in works], {})
        outcome = _Outcome([], [], {})
        pending = [work for work in works if work.key in plans]
        for index, work in enumerate(pending):
            key = work.key
            step = plans[key]
            sent_add = sent_remove = False
            errors: list[str] = []
            try:
                if step.add:
                    result = await client.tags_add(key[1], step.add)
                    self._count("add", result.ok)
                    errors += [e.message for e in result.user_errors]
                    sent_add = result.ok
                if step.remove:
                    result = await client.tags_remove(key[1], step.remove)
                    self._count("remove", result.ok)
                    errors += [e.message for e in result.user_errors]
                    sent_remove = result.ok
            except ShopifyUnavailable as exc:
                self._metrics.tag_writes.labels("any", "unavailable").inc()
                # The shop is not answering: the rest of its customers wait with this one.
                outcome.retry += [(w, str(exc)) for w in pending[index:]]
                self._record(outcome, key, step, ledgers[key], sent_add, sent_remove)
                break
            except ShopifyError as exc:
                outcome.retry.append((work, str(exc)))
                continue
            self._record(outcome, key, step, ledgers[key], sent_add, sent_remove)
            if errors:
                outcome.retry.append((work, "; ".join(errors)))
            else:
                outcome.done.append(work)
        return outcome

    async def _reconcile_bulk(self, client: AdminClient, works: list[storage.Work]) -> _Outcome:
        """One bulk mutation per direction for many customers of one shop. Whether a wanted
        tag is the merchant's comes from the tags Shopify's webhooks told the segmenter, not
        from one read per customer (which would cost what the bulk path saves)."""
        plans, ledgers = await self._plans(client, works, from_shopify=False)
        outcome = _Outcome([], [], {})
        by_key = {work.key: work for work in works}
        failed: dict[Key, str] = {}
        refused: dict[Key, str] = {}
        refused_kinds: dict[Key, set[str]] = {}
        waiting: set[Key] = set()
        kinds_: tuple[TagKind, ...] = ("add", "remove")
        for kind in kinds_:
            lines = [
                (key[1], step.add if kind == "add" else step.remove)
                for key, step in plans.items()
                if (step.add if kind == "add" else step.remove)
            ]
            if not lines:
                continue
            try:
                result = await client.run_bulk_tags(
                    kind, lines, self._settings.tagger_bulk_poll_timeout_seconds, self._stop
                )
            except ShopifyBulkPending as exc:
                # Still running on Shopify: read later, never sent again meanwhile.
                now = self._clock()
                poll_at = now + timedelta(seconds=self._settings.tagger_bulk_repoll_seconds)
                late_lines = [(c, list(t)) for c, t in lines]
                outcome.late.append(
                    storage.LateBulk(
                        works[0].shop_id, exc.operation_id, kind, late_lines, now, poll_at
                    )
                )
                waiting.update((works[0].shop_id, c) for c, _ in lines)
                self._metrics.bulk_operations.labels("late").inc()
                continue
            except ShopifyError as exc:
                for key, step in plans.items():
                    if step.add if kind == "add" else step.remove:
                        failed[key] = str(exc)
                self._metrics.bulk_operations.labels("failed").inc()
                continue
            self._metrics.bulk_operations.labels(result.status.lower()).inc()
            shop_id = works[0].shop_id
            for failure in result.failures:
                key = (shop_id, failure.customer_id)
                message = "; ".join(failure.messages) or "no result line"
                (failed if failure.retryable else refused)[key] = message
                if not failure.retryable:
                    refused_kinds.setdefault(key, set()).add(kind)
        for key, step in plans.items():
            work = by_key[key]
            if key in waiting:
                # Whatever else was sent for them, they are settled once the late operation
                # is read: its lines are recorded then, and another look finishes them.
                outcome.later.append(work)
                continue
            if key in failed:
                # Back to the single path, due now; whatever Shopify did, resending is safe.
                outcome.retry.append((replace(work, attempts=-1), failed[key]))
                continue
            # Only the directions Shopify applied: a refused line's entry stays pending.
            kinds = refused_kinds.get(key, set())
            sent_add, sent_remove = bool(step.add) and "add" not in kinds, bool(step.remove)
            sent_remove = sent_remove and "remove" not in kinds
            self._record(outcome, key, step, ledgers[key], sent_add, sent_remove)
            if key in refused:
                outcome.retry.append((work, refused[key]))
            else:
                outcome.done.append(work)
        return outcome

    def _record(
        self,
        outcome: _Outcome,
        key: Key,
        step: Plan,
        ledger: dict[str, Entry],
        sent_add: bool,
        sent_remove: bool,
    ) -> None:
        accepted = Plan(step.add if sent_add else (), step.remove if sent_remove else (), {})
        entries = applied(accepted, ledger, self._clock())
        if entries:
            outcome.entries.setdefault(key, {}).update(entries)

    def _count(self, operation: str, ok: bool) -> None:
        self._metrics.tag_writes.labels(operation, "ok" if ok else "user_error").inc()

    async def _late_bulk_guarded(self, shop_id: int) -> bool:
        """_late_bulk, where one shop's problem (a token that no longer opens, an answer we
        cannot read) keeps that shop's bulk lane waiting and stops no other shop."""
        try:
            return await self._late_bulk(shop_id)
        except Exception as exc:
            if infrastructure_fault(exc) is not None:
                raise
            logger.warning(
                "a shop's late bulk operation could not be looked at",
                extra={"shop_id": shop_id, "reason": type(exc).__name__},
            )
            later = self._clock() + timedelta(seconds=self._settings.tagger_bulk_repoll_seconds)
            async with self._pool.acquire() as conn:
                for operation in await storage.bulk_operations(conn, shop_id):
                    await storage.poll_bulk_later(conn, shop_id, operation.operation_id, later)
            return True

    async def _late_bulk(self, shop_id: int) -> bool:
        """Look again at the shop's late bulk operations that are due; True while one still
        runs (the shop's bulk lane waits for it, so no line is sent twice)."""
        async with self._pool.acquire() as conn:
            operations = await storage.bulk_operations(conn, shop_id)
        if not operations:
            return False
        client = await self._clients.get(shop_id)
        running = False
        for operation in operations:
            now = self._clock()
            later = now + timedelta(seconds=self._settings.tagger_bulk_repoll_seconds)
            result: BulkResult | None = None
            if client is not None and operation.poll_at <= now:
                kind: TagKind = "add" if operation.kind == "add" else "remove"
                try:
                    result = await client.bulk_tags_result(
                        kind, operation.operation_id, operation.lines
                    )
                except ShopifyError as exc:
                    logger.info(
                        "a late bulk operation could not be read yet",
                        extra={"shop_id": shop_id, "reason": str(exc)[:200]},
                    )
            elif client is None:
                # Not connected any more: connecting again marks every member anew.
                async with self._pool.acquire() as conn:
                    await storage.drop_bulk_operation(conn, shop_id, operation.operation_id)
                continue
            if result is None:
                running = True
                if operation.poll_at <= now:
                    async with self._pool.acquire() as conn:
                        await storage.poll_bulk_later(conn, shop_id, operation.operation_id, later)
                continue
            await self._settle_late(shop_id, operation, result)
        return running

    async def _settle_late(
        self, shop_id: int, operation: storage.LateBulk, result: BulkResult
    ) -> None:
        """Record the lines of a late bulk operation: an entry still waiting on this write
        becomes added (removed); a failed line's customer gets another look, on the live path.
        Its customers' queued work is due at once, to be found settled."""
        self._metrics.bulk_operations.labels(result.status.lower()).inc()
        # Customer id 0: the line of a customer erased since (storage.erase_customer).
        failed = {failure.customer_id for failure in result.failures} - {0}
        keys = [(shop_id, customer_id) for customer_id, _ in operation.lines if customer_id]
        waiting: State = "adding" if operation.kind == "add" else "removing"
        done: State = "added" if operation.kind == "add" else "removed"
        now = self._clock()
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await privacy.lock_customers(conn, keys)
                erased, _ = await privacy.erased_among(conn, keys)
                failed -= {c for _, c in erased}
                keys = [key for key in keys if key not in erased]
                ledgers = await storage.ledgers(conn, keys)
                entries: dict[Key, dict[str, Entry | None]] = {}
                for customer_id, tags in operation.lines:
                    if customer_id in failed or (shop_id, customer_id) in erased:
                        continue
                    ledger = ledgers.get((shop_id, customer_id), {})
                    for tag in tags:
                        entry = ledger.get(tag_key(tag))
                        if entry is not None and entry.state == waiting:
                            entries.setdefault((shop_id, customer_id), {})[tag_key(tag)] = Entry(
                                entry.tag, done, now
                            )
                await storage.write_ledger(conn, entries)
                await storage.mark_tag_work(conn, {(shop_id, c): False for c in failed})
                await storage.due_now(conn, keys)
                await storage.drop_bulk_operation(conn, shop_id, operation.operation_id)

    async def _finish(self, outcome: _Outcome) -> None:
        now = self._clock()
        settings = self._settings
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await self._forget_erased(conn, outcome)
                for late in outcome.late:
                    await storage.save_bulk_operation(conn, late.shop_id, late)
                if outcome.later:
                    poll_at = min(late.poll_at for late in outcome.late)
                    await storage.put_back(conn, outcome.later, poll_at)
                await storage.write_ledger(conn, outcome.entries)
                await storage.finish_tag_work(conn, outcome.done)
                for work, error in outcome.retry:
                    if work.attempts < 0:
                        await storage.move_to_single_lane(conn, work, error)
                        self._metrics.reconciled.labels("retry").inc()
                        continue
                    attempts = work.attempts + 1
                    parked = attempts >= settings.tagger_max_attempts
                    delay = (
                        settings.tagger_parked_retry_seconds
                        if parked
                        else min(
                            settings.retry_max_seconds,
                            settings.retry_initial_seconds * 2 ** (attempts - 1),
                        )
                        * (0.5 + self._rng.random())
                    )
                    await storage.retry_tag_work(
                        conn, work, now + timedelta(seconds=delay), error, parked
                    )
                    self._metrics.reconciled.labels("parked" if parked else "retry").inc()
        self._metrics.reconciled.labels("done").inc(len(outcome.done))
        if outcome.retry:
            logger.info(
                "tag writes put back for later",
                extra={"customers": len(outcome.retry), "reason": outcome.retry[0][1][:200]},
            )

    async def _forget_erased(self, conn: asyncpg.Connection, outcome: "_Outcome") -> None:
        """Leave out what this round would write of customers erased since it read their work
        (customers/redact); the lock makes an erasure wait for this transaction, or this
        transaction see it."""
        keys = set(outcome.entries)
        keys |= {(late.shop_id, c) for late in outcome.late for c, _ in late.lines}
        await privacy.lock_customers(conn, keys)
        erased, _ = await privacy.erased_among(conn, keys)
        if not erased:
            return
        outcome.entries = {k: v for k, v in outcome.entries.items() if k not in erased}
        for late in outcome.late:
            # The line keeps its place (the result file numbers lines), not the customer.
            late.lines[:] = [
                (0 if (late.shop_id, c) in erased else c, tags) for c, tags in late.lines
            ]

    async def _observe_backlog(self) -> None:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(storage.BACKLOG)
            totals = await conn.fetch(storage.JOURNEY_TOTALS, self._clock())
        self._observe_journeys(totals)
        parked = 0
        for lane in ("live", "bulk"):
            self._metrics.tag_backlog.labels(lane).set(0)
        for row in rows:
            self._metrics.tag_backlog.labels("bulk" if row["bulk"] else "live").set(row["due"])
            parked += row["parked"]
        self._metrics.parked.set(parked)

    def _observe_journeys(self, totals: Sequence[asyncpg.Record]) -> None:
        _journey_gauges_reset(self._metrics)
        for row in totals:
            if row["kind"] == "enrolments":
                self._metrics.enrolments.labels(row["state"], row["label"]).set(row["n"])
            elif row["kind"] == "sends":
                self._metrics.journey_sends.labels(row["state"]).set(row["n"])
            elif row["kind"] == "due":
                self._metrics.due_steps.set(row["n"])
            else:
                self._metrics.conversions.labels(row["label"]).set(row["n"])


def _journey_gauges_reset(metrics: TaggerMetrics) -> None:
    for state in ("active", "completed", "exited"):
        for group in ("treated", "holdout"):
            metrics.enrolments.labels(state, group).set(0)
    for group in ("treated", "holdout"):
        metrics.conversions.labels(group).set(0)
    metrics.due_steps.set(0)
