"""Review 13: ways the journey scheduler breaks its guarantees (each failed before its fix)."""

import asyncio
import uuid
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx

from services.common.shops import create_shop
from services.segmenter.runtime.health import ComponentHealth
from services.tagger.email.sender import SendResult
from services.tagger.journeys.holdout import Group
from services.tagger.journeys_store import unsubscribe
from services.tagger.scheduler import JourneyScheduler, Outgoing, Sender
from tests.integration.tagger.journeys.support import HOUR, NOW, Journeys


async def test_review13_an_smtp_retry_is_not_sent_after_the_customer_exited(
    journeys: Journeys,
) -> None:
    """Finding: TAKE_RETRIES / `_retry` re-check consent only, not the enrolment: a step SMTP
    answered "try later" for is still sent after the customer left the journey (here: the
    exit change of the trigger segment was applied and the enrolment is `exited`)."""
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    await journeys.change(customer, "new-customer")
    journeys.mailbox.refuse_next(1, 451)
    scheduler = journeys.scheduler()
    await journeys.at(NOW + HOUR, scheduler)
    assert [(s[0], s[1]) for s in await journeys.sends(customer)] == [(0, "deferred")]

    await journeys.leave(customer, "new-customer")
    await journeys.change(customer, "new-customer", "exited")
    assert (await journeys.enrolment(customer))["state"] == "exited"

    await journeys.at(NOW + 2 * HOUR, scheduler)
    assert len(journeys.mailbox.messages()) == 0, await journeys.sends(customer)


async def test_review13_an_smtp_retry_waits_out_quiet_hours(journeys: Journeys) -> None:
    """Finding: `_retry` re-checks consent but not the send window (nor the cap): a step SMTP
    deferred at 20:59 goes out at 21:30, inside the shipped quiet hours (21:00-09:00)."""
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    evening = NOW.replace(hour=19, minute=59)
    journeys.clock.now = evening
    await journeys.customer(customer)
    await journeys.change(customer, "new-customer")  # the welcome is due at 20:59
    journeys.mailbox.refuse_next(1, 451)
    scheduler = journeys.scheduler()
    await journeys.at(evening + HOUR, scheduler)
    assert [(s[0], s[1]) for s in await journeys.sends(customer)] == [(0, "deferred")]

    await journeys.at(NOW.replace(hour=21, minute=30), scheduler)
    assert len(journeys.mailbox.messages()) == 0, "sent inside quiet hours"
    await journeys.at(NOW.replace(hour=9, minute=1) + timedelta(days=1), scheduler)
    assert len(journeys.mailbox.messages()) == 1


class _HeldScheduler(JourneyScheduler):
    """A replica that stops inside its decision transaction, after recording a send."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def _prepare(self, *args: Any, **kwargs: Any) -> Outgoing | None:
        outgoing = await super()._prepare(*args, **kwargs)
        self.entered.set()
        await self.release.wait()
        return outgoing


async def test_review13_two_replicas_do_not_break_the_cap(journeys: Journeys) -> None:
    """Finding: the cap reads the customer's recent sends with only a FOR SHARE lock on the
    customer, so two replicas deciding two journeys' steps of one customer at once each see
    no send and both send: two emails where the cap allows one."""
    journeys.settings = journeys.settings.model_copy(
        update={"journey_cap_emails": 1, "tagger_batch_size": 1}
    )
    welcome = set(await journeys.ids_in("welcome", Group.TREATED, 50))
    vip = set(await journeys.ids_in("vip-care", Group.TREATED, 50))
    customer = min(welcome & vip)
    await journeys.customer(customer, segments=("new-customer", "vip"))
    await journeys.change(customer, "vip")
    await journeys.change(customer, "new-customer")
    journeys.clock.now = NOW + HOUR  # both journeys' first steps are due
    sender = journeys.scheduler()._sender
    first = _HeldScheduler(
        journeys.settings, journeys.pool, sender, ComponentHealth(), clock=journeys.clock
    )
    second = journeys.scheduler()
    held = asyncio.create_task(first.round())
    await asyncio.wait_for(first.entered.wait(), 10)
    other = asyncio.create_task(second.round())
    try:
        # The second replica either finishes its round or waits for the first one's lock.
        deadline = asyncio.get_running_loop().time() + 10
        while not other.done() and asyncio.get_running_loop().time() < deadline:
            waiting = await journeys.db.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting:
                break
            await asyncio.sleep(0.02)
    finally:
        first.release.set()
    await asyncio.wait_for(held, 20)
    await asyncio.wait_for(other, 20)
    assert len(journeys.mailbox.messages()) == 1, await journeys.sends(customer)


async def test_review13_another_shops_customer_is_a_404(
    journeys: Journeys, tagger_url: str
) -> None:
    """Finding: /v1/customers/{id}/tags and /v1/customers/{id}/enrolments answer 200 (with
    empty lists) for a customer of another shop, where the guarantee is a 404 on every
    tagger endpoint (a caller cannot tell "not yours" from "nothing yet")."""
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    await journeys.change(customer, "new-customer")
    await journeys.db.execute(
        "INSERT INTO tag_ledger (shop_id, customer_id, tag_key, tag, state, changed_at)"
        " VALUES ($1, $2, 'vip', 'VIP', 'added', $3)",
        journeys.shop_id,
        customer,
        NOW,
    )
    other = await create_shop(journeys.db, f"t{uuid.uuid4().hex[:12]}.myshopify.com")
    auth = {"Authorization": f"Bearer {other.api_token}"}
    async with httpx.AsyncClient(base_url=tagger_url, headers=auth) as http:
        tags = await http.get(f"/v1/customers/{customer}/tags")
        enrolments = await http.get(f"/v1/customers/{customer}/enrolments")
    assert (tags.status_code, enrolments.status_code) == (404, 404), (tags.text, enrolments.text)


class _UnsubscribingSender:
    """Delivers through the real SMTP server; while the first message is handed over, the
    other customer presses the one-click unsubscribe (and it commits)."""

    def __init__(self, inner: Sender, journeys: Journeys, customers: tuple[int, int]) -> None:
        self._inner = inner
        self._journeys = journeys
        self._customers = customers
        self.unsubscribed: int | None = None

    async def send(self, message: EmailMessage) -> SendResult:
        if self.unsubscribed is None:
            first, second = self._customers
            other = second if str(message["To"]) == f"customer-{first}@example.com" else first
            async with self._journeys.pool.acquire() as conn, conn.transaction():
                await unsubscribe(conn, self._journeys.shop_id, other, self._journeys.clock.now)
            self.unsubscribed = other
        return await self._inner.send(message)


async def test_review13_no_marketing_email_after_the_unsubscribe_committed(
    journeys: Journeys,
) -> None:
    """Finding: consent is checked when a round decides, but the round's emails go to SMTP
    one by one after that transaction committed; an unsubscribe committed (and answered
    "You will get no more marketing email") before a later email of the same batch is handed
    over does not stop it."""
    first, second = await journeys.ids_in("welcome", Group.TREATED, 2)
    for customer in (first, second):
        await journeys.customer(customer)
        await journeys.change(customer, "new-customer")
    sender = _UnsubscribingSender(journeys.scheduler()._sender, journeys, (first, second))
    await journeys.at(NOW + HOUR, journeys.scheduler(sender))
    assert sender.unsubscribed is not None
    to = [str(m.parse()["To"]) for m in journeys.mailbox.messages()]
    assert f"customer-{sender.unsubscribed}@example.com" not in to, to
