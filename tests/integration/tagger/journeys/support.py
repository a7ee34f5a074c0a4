"""A shop with the shipped segments and journeys, customers in PostgreSQL, a real local SMTP
mailbox, and a journey scheduler on a clock the test moves."""

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.dev.mailbox import LocalMailbox
from services.segmenter.runtime.health import ComponentHealth
from services.segmenter.storage.segments import install_templates
from services.tagger.app import create_app
from services.tagger.email.sender import MessageLookup, SmtpConfig, SmtpSender
from services.tagger.journeys.enrolment import SegmentChange
from services.tagger.journeys.holdout import Group, assign_group
from services.tagger.journeys_store import (
    apply_segment_changes,
    forget_compiled,
    install_journeys,
)
from services.tagger.scheduler import JourneyScheduler, Sender
from services.tagger.service import TaggerHealth
from tests.helpers import start_server

# 12:00 UTC: outside the shipped quiet hours (21:00-09:00) in the default zone (UTC).
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
KEYS = "k1:" + "s" * 40


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Journeys:
    db: asyncpg.Connection
    pool: asyncpg.Pool
    settings: Settings
    shop_id: int
    domain: str
    mailbox: LocalMailbox
    clock: Clock
    seq: list[int] = field(default_factory=lambda: [0])

    async def journey_id(self, handle: str) -> int:
        found: int = await self.db.fetchval(
            "SELECT id FROM journeys WHERE shop_id = $1 AND handle = $2", self.shop_id, handle
        )
        return found

    async def ids_in(self, handle: str, group: Group, count: int, start: int = 1) -> list[int]:
        """The first `count` customer ids from `start` that the journey puts in `group`."""
        journey_id = await self.journey_id(handle)
        found: list[int] = []
        customer = start
        while len(found) < count:
            if assign_group(journey_id, customer, Decimal("0.1")) is group:
                found.append(customer)
            customer += 1
        return found

    async def customer(
        self,
        customer_id: int,
        *,
        consent: bool = True,
        email: str | None = None,
        segments: Iterable[str] = ("new-customer",),
        country: str | None = None,
        first_name: str | None = None,
    ) -> None:
        """A customer row with its facts (and first name in its profile, as the segmenter keeps
        it), and memberships of these segments."""
        attributes = {"first_name": [first_name, NOW.isoformat()]} if first_name else {}
        await self.db.execute(
            "INSERT INTO customers (shop_id, customer_id, email, accepts_email_marketing,"
            " country_code, profile) VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
            self.shop_id,
            customer_id,
            email or f"customer-{customer_id}@example.com",
            consent,
            country,
            json.dumps({"attributes": attributes, "tags": {}}),
        )
        for handle in segments:
            await self.db.execute(
                "INSERT INTO memberships (shop_id, segment_id, customer_id, since)"
                " SELECT $1, id, $2, $3 FROM segments WHERE shop_id = $1 AND handle = $4",
                self.shop_id,
                customer_id,
                self.clock.now,
                handle,
            )

    async def change(self, customer_id: int, segment: str, change: str = "entered") -> None:
        """A segment change as the tagger's consumer applies it."""
        self.seq[0] += 1
        async with self.pool.acquire() as conn, conn.transaction():
            await apply_segment_changes(
                conn,
                self.shop_id,
                [
                    SegmentChange(
                        change_id=f"c{self.seq[0]}",
                        seq=self.seq[0],
                        customer_id=customer_id,
                        segment_handle=segment,
                        change=change,  # type: ignore[arg-type]
                        cause="event",
                        changed_at=self.clock.now,
                    )
                ],
                self.clock.now,
            )

    async def leave(self, customer_id: int, segment: str) -> None:
        await self.db.execute(
            "DELETE FROM memberships WHERE shop_id = $1 AND customer_id = $2 AND segment_id ="
            " (SELECT id FROM segments WHERE shop_id = $1 AND handle = $3)",
            self.shop_id,
            customer_id,
            segment,
        )

    def scheduler(
        self, sender: Sender | None = None, lookup: MessageLookup | None = None
    ) -> JourneyScheduler:
        smtp = SmtpSender(SmtpConfig("127.0.0.1", self.mailbox.port, timeout_seconds=5.0))
        return JourneyScheduler(
            self.settings,
            self.pool,
            sender or smtp,
            ComponentHealth(),
            lookup=lookup,
            clock=self.clock,
        )

    async def settle(self, scheduler: JourneyScheduler, rounds: int = 5) -> None:
        for _ in range(rounds):
            if not await scheduler.round():
                return

    async def at(self, moment: datetime, scheduler: JourneyScheduler) -> None:
        self.clock.now = moment
        await self.settle(scheduler)

    async def sends(self, customer_id: int) -> list[tuple[int, str, int, str | None]]:
        rows = await self.db.fetch(
            "SELECT s.step_index, s.state, s.deferrals, s.error FROM journey_sends s"
            " JOIN journey_enrolments e ON e.id = s.enrolment_id"
            " WHERE e.shop_id = $1 AND e.customer_id = $2 ORDER BY e.id, s.step_index",
            self.shop_id,
            customer_id,
        )
        return [(r["step_index"], r["state"], r["deferrals"], r["error"]) for r in rows]

    async def enrolment(self, customer_id: int, handle: str = "welcome") -> asyncpg.Record:
        row: asyncpg.Record = await self.db.fetchrow(
            "SELECT e.* FROM journey_enrolments e JOIN journeys j ON j.id = e.journey_id"
            " WHERE e.shop_id = $1 AND e.customer_id = $2 AND j.handle = $3"
            " ORDER BY e.id DESC LIMIT 1",
            self.shop_id,
            customer_id,
            handle,
        )
        return row


@pytest.fixture
async def journeys(
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    shop: ShopCredentials,
    mailbox: LocalMailbox,
) -> Journeys:
    settings = settings.model_copy(
        update={
            "smtp_port": mailbox.port,
            "smtp_timeout_seconds": 5.0,
            "unsubscribe_keys": SecretStr(KEYS),
            "journey_coupon_code": "WELCOME10",
            "retry_initial_seconds": 1.0,
        }
    )
    forget_compiled()  # journey ids start again in this test's database
    await install_templates(db, shop.shop_id, NOW)
    await install_journeys(db, shop.shop_id, NOW)
    return Journeys(db, pool, settings, shop.shop_id, shop.domain, mailbox, Clock())


HOUR = timedelta(hours=1)


@pytest.fixture
async def tagger_url(journeys: Journeys) -> AsyncIterator[str]:
    """The tagger's app (unsubscribe, journeys API) over real HTTP on a free port."""
    app = create_app(journeys.settings, TaggerHealth(), CollectorRegistry())
    server = make_server(app, "127.0.0.1", journeys.settings.tagger_port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{journeys.settings.tagger_port}"
    server.should_exit = True
    await task


def midday_zone(now: datetime) -> str:
    """A fixed-offset zone in which `now` is around noon: tests on the real clock are then
    outside the shipped quiet hours (21:00-09:00) whenever they run."""
    offset = 12 - now.astimezone(UTC).hour  # -11 .. 12
    # The Etc zones' signs are POSIX's: Etc/GMT-9 is nine hours ahead of UTC.
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"
