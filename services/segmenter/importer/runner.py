"""Runs an import: files → records → reducer events → `pipeline.apply_events`, batch by batch.

Imported objects take the live path: the same reducer, evaluation, memberships and outbox, one
transaction per batch. Event ids name object versions, so a re-run is all duplicates.
"""

import csv
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import asyncpg

from services.common.shops import normalize_domain
from services.segmenter.importer.csv_customers import read_customers_csv
from services.segmenter.importer.jsonl import read_jsonl
from services.segmenter.importer.records import ImportRecord, Rejection, event_for
from services.segmenter.runtime.pipeline import (
    FANOUT_HOLD,
    ShopEvent,
    StaleOwnershipError,
    apply_events,
)
from services.segmenter.runtime.scheduler import evaluate_buyers
from services.segmenter.runtime.segment_cache import RuleBook
from services.segmenter.storage import queries

FileKind = Literal["csv", "jsonl"]
# Enough to show what went wrong; the count covers the rest.
MAX_REJECTIONS_KEPT = 1000
# Conflicts with a live segmenter batch over the same customers or orders: the batch is run
# again in a new transaction, as the worker does (services/segmenter/runtime/worker.py RETRYABLE).
_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError, StaleOwnershipError)
_ATTEMPTS = 5


class UnknownShopError(LookupError):
    """No shop is registered under the domain given."""


class UnreadableFileError(ValueError):
    """A file that is not UTF-8 text or not CSV at all (batches before it stay imported)."""


@dataclass(frozen=True)
class RejectedRow:
    """A row that was not imported: the file, its line number and why."""

    file: str
    line: int
    reason: str


@dataclass(frozen=True)
class Progress:
    """Where an import stands after a batch."""

    file: str
    rows_read: int
    events_applied: int
    duplicates: int
    rejected: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ImportReport:
    """What an import did; `rejected` keeps the first MAX_REJECTIONS_KEPT of `rejected_count`."""

    rows_read: int = 0
    events_applied: int = 0
    duplicates: int = 0
    segment_changes: int = 0
    rejected_count: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


def detect_kind(path: Path) -> FileKind:
    """CSV or JSONL, by extension, else by the first character (a JSON object starts with "{")."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    with path.open(encoding="utf-8-sig") as handle:
        head = handle.read(4096).lstrip()
    return "jsonl" if head.startswith("{") else "csv"


def _counted(lines: Iterable[str], report: ImportReport) -> Iterator[str]:
    for line in lines:
        if line.strip():
            report.rows_read += 1
        yield line


class _Import:
    def __init__(
        self,
        pool: asyncpg.Pool,
        shop_id: int,
        batch_size: int,
        now: datetime,
        exported_at: datetime | None,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        self.pool = pool
        self.shop_id = shop_id
        self.batch_size = batch_size
        self.now = now
        self.exported_at = exported_at
        # Products whose buyers are evaluated at the end, by the import itself.
        self.changed_products: set[int] = set()
        self.progress = progress
        self.rules = RuleBook()
        self.report = ImportReport()
        self.batch: list[ShopEvent] = []
        self.started = time.perf_counter()

    def reject(self, path: Path, line: int, reason: str) -> None:
        self.report.rejected_count += 1
        if len(self.report.rejected) < MAX_REJECTIONS_KEPT:
            self.report.rejected.append(RejectedRow(str(path), line, reason))

    async def import_file(self, path: Path) -> None:
        try:
            await self._read(path)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise UnreadableFileError(f"cannot read {path}: {exc}") from exc
        await self.flush(path)

    def file_exported_at(self, path: Path) -> datetime:
        """When the file's totals were true: as given, else the file's time (never later
        than the import)."""
        if self.exported_at is not None:
            return self.exported_at
        written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        return min(written, self.now)

    async def _read(self, path: Path) -> None:
        kind = detect_kind(path)
        exported_at = self.file_exported_at(path)
        # utf-8-sig: spreadsheets save CSV with a byte-order mark.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            items: Iterator[ImportRecord | Rejection]
            if kind == "csv":
                items = read_customers_csv(handle)
            else:
                items = read_jsonl(_counted(handle, self.report))
            for item in items:
                if kind == "csv":
                    self.report.rows_read += 1
                if isinstance(item, Rejection):
                    self.reject(path, item.line, item.reason)
                    continue
                try:
                    event = event_for(item, self.now, exported_at)
                except ValueError as exc:
                    self.reject(path, item.line, str(exc))
                    continue
                self.batch.append(ShopEvent(self.shop_id, event))
                if len(self.batch) >= self.batch_size:
                    await self.flush(path)

    async def flush(self, path: Path) -> None:
        if self.batch:
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    async with self.pool.acquire() as conn, conn.transaction():
                        outcome = await apply_events(
                            conn,
                            self.batch,
                            self.rules,
                            self.now,
                            cause="import",
                            defer_fanout=True,
                        )
                    break
                except _RETRYABLE:
                    if attempt == _ATTEMPTS:
                        raise
            self.report.events_applied += len(outcome.applied)
            self.report.duplicates += len(outcome.duplicates)
            self.report.segment_changes += len(outcome.changes)
            if outcome.changed_products or self.changed_products:
                async with self.pool.acquire() as conn:
                    await queries.hold_fanout(conn, self.shop_id, datetime.now(UTC) + FANOUT_HOLD)
            self.changed_products.update(outcome.changed_products.get(self.shop_id, []))
            self.batch = []
        self.report.seconds = time.perf_counter() - self.started
        if self.progress is not None:
            report = self.report
            self.progress(
                Progress(
                    str(path),
                    report.rows_read,
                    report.events_applied,
                    report.duplicates,
                    report.rejected_count,
                    report.seconds,
                )
            )


async def shop_id_of(pool: asyncpg.Pool, shop_domain: str) -> int:
    """The id of the shop registered under this domain; UnknownShopError if there is none."""
    try:
        domain = normalize_domain(shop_domain)
    except ValueError as exc:
        raise UnknownShopError(str(exc)) from exc
    async with pool.acquire() as conn:
        found = await queries.shop_ids(conn, [domain])
    if domain not in found:
        raise UnknownShopError(
            f"no shop {domain} is registered (create it with `segflow shops create`)"
        )
    return found[domain]


async def import_files(
    pool: asyncpg.Pool,
    shop_domain: str,
    paths: Sequence[Path],
    *,
    batch_size: int = 2000,
    now: datetime | None = None,
    exported_at: datetime | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> ImportReport:
    """Import CSV / JSONL exports into one shop; rejected rows are reported, never fatal.

    `now` is the evaluation time and the events' received_at (default: the current time).
    `exported_at` is when the files were exported, which dates Shopify's totals in them
    (default: each file's modification time, at most `now`).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    shop_id = await shop_id_of(pool, shop_domain)
    run = _Import(pool, shop_id, batch_size, now or datetime.now(UTC), exported_at, progress)
    # Products a stopped import of this shop changed and did not get to evaluate.
    async with pool.acquire() as conn:
        run.changed_products.update(await queries.held_fanout(conn, shop_id))
    for path in paths:
        await run.import_file(path)
    # Products that changed after their orders were imported: their buyers are evaluated
    # here, as the import's own (bulk) changes, so the import ends with every customer's
    # facts complete and no flood of live changes.
    report = run.report
    report.segment_changes += await evaluate_buyers(
        pool, run.rules, shop_id, sorted(run.changed_products), run.now, "import", batch_size
    )
    async with pool.acquire() as conn:
        await queries.release_fanout(conn, shop_id, sorted(run.changed_products))
    report.seconds = time.perf_counter() - run.started
    return report
