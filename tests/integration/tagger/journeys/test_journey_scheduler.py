"""The journey send scheduler with a real PostgreSQL and a real local SMTP mailbox: a due step
is sent once with its fixed Message-ID and one-click headers; a holdout entrant's step is
recorded, not sent; no consent, no marketing email; quiet hours defer; leaving the segment
exits; a crash between the `sending` record and SMTP's answer sends no step twice."""

from datetime import timedelta
from email.message import EmailMessage

import pytest

from services.tagger.email.compose import message_id_for
from services.tagger.email.sender import SendResult
from services.tagger.journeys.holdout import Group
from services.tagger.scheduler import MAX_SMTP_ATTEMPTS
from tests.integration.tagger.journeys.support import HOUR, NOW, Journeys


async def test_due_welcome_is_sent_once_and_holdout_only_recorded(journeys: Journeys) -> None:
    (treated,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    (held,) = await journeys.ids_in("welcome", Group.HOLDOUT, 1)
    for customer in (treated, held):
        await journeys.customer(customer)
        await journeys.change(customer, "new-customer")
    scheduler = journeys.scheduler()

    await journeys.at(NOW + 30 * timedelta(minutes=1), scheduler)  # not due yet
    assert journeys.mailbox.messages() == []
    await journeys.at(NOW + HOUR, scheduler)
    await journeys.at(NOW + HOUR + timedelta(minutes=5), scheduler)

    messages = journeys.mailbox.messages()
    assert len(messages) == 1
    email = messages[0].parse()
    enrolment = await journeys.enrolment(treated)
    assert email["Message-ID"] == message_id_for(
        journeys.shop_id, enrolment["id"], 0, "segflow.test"
    )
    assert email["To"] == f"customer-{treated}@example.com"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/unsubscribe/1.k1." in email["List-Unsubscribe"]
    assert await journeys.sends(treated) == [(0, "sent", 0, None)]
    assert enrolment["step_index"] == 1
    assert enrolment["next_due_at"] == NOW + timedelta(days=3)
    # The holdout entrant's step is decided like a send, and nothing goes out.
    assert await journeys.sends(held) == [(0, "suppressed", 0, None)]
    assert (await journeys.enrolment(held))["step_index"] == 1


async def test_no_consent_means_no_marketing_email(journeys: Journeys) -> None:
    first, second = await journeys.ids_in("welcome", Group.TREATED, 2)
    await journeys.customer(first, consent=False)
    await journeys.customer(second)
    for customer in (first, second):
        await journeys.change(customer, "new-customer")
    # The second unsubscribed through our link after entering: our override wins over facts.
    await journeys.db.execute(
        "INSERT INTO consent_overrides (shop_id, customer_id, unsubscribed_at, sync_due_at)"
        " VALUES ($1, $2, $3, $3)",
        journeys.shop_id,
        second,
        NOW,
    )
    await journeys.at(NOW + HOUR, journeys.scheduler())

    assert journeys.mailbox.messages() == []
    assert await journeys.sends(first) == [(0, "skipped", 0, "no_marketing_consent")]
    assert (await journeys.enrolment(first))["step_index"] == 1
    ended = await journeys.enrolment(second)
    assert (ended["state"], ended["exit_reason"]) == ("exited", "unsubscribed")


async def test_quiet_hours_defer_and_the_step_goes_at_their_end(journeys: Journeys) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    journeys.clock.now = NOW.replace(hour=20, minute=30)
    await journeys.change(customer, "new-customer")
    scheduler = journeys.scheduler()

    await journeys.at(NOW.replace(hour=21, minute=30), scheduler)  # due, but quiet
    assert journeys.mailbox.messages() == []
    assert await journeys.sends(customer) == [(0, "deferred", 1, None)]
    next_morning = NOW.replace(hour=9) + timedelta(days=1)
    assert (await journeys.enrolment(customer))["next_due_at"] == next_morning

    await journeys.at(next_morning, scheduler)
    assert len(journeys.mailbox.messages()) == 1
    assert await journeys.sends(customer) == [(0, "sent", 1, None)]


async def test_leaving_the_segment_exits_at_the_next_step(journeys: Journeys) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    await journeys.change(customer, "new-customer")
    # The exit change is late or lost: the membership alone ends the enrolment at its step.
    await journeys.leave(customer, "new-customer")
    await journeys.at(NOW + HOUR, journeys.scheduler())

    assert journeys.mailbox.messages() == []
    ended = await journeys.enrolment(customer)
    assert (ended["state"], ended["exit_reason"]) == ("exited", "segment_exited")
    assert await journeys.sends(customer) == []


class Crash(BaseException):
    """Stands for the process dying (kill -9): nothing after it runs."""


class CrashingSender:
    """Hands the message to the real SMTP server (or not), then dies before the answer is
    recorded."""

    def __init__(self, inner: object, deliver: bool) -> None:
        self._inner = inner
        self._deliver = deliver

    async def send(self, message: EmailMessage) -> SendResult:
        if self._deliver:
            await self._inner.send(message)  # type: ignore[attr-defined]
        raise Crash


@pytest.mark.parametrize(("delivered", "resolved"), [(True, "sent"), (False, "unknown")])
async def test_a_crash_mid_send_never_sends_the_step_twice(
    journeys: Journeys, delivered: bool, resolved: str
) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    await journeys.change(customer, "new-customer")
    real = journeys.scheduler()._sender
    crashing = journeys.scheduler(CrashingSender(real, deliver=delivered))
    journeys.clock.now = NOW + HOUR
    with pytest.raises(Crash):
        await crashing.round()
    assert await journeys.sends(customer) == [(0, "sending", 0, None)]

    # A new process, right away: the record is leased, so it is neither resolved nor re-sent.
    restarted = journeys.scheduler(lookup=journeys.mailbox)
    await journeys.settle(restarted)
    assert await journeys.sends(customer) == [(0, "sending", 0, None)]
    # Once the lease ran out, it is resolved from the mailbox's store, without sending.
    await journeys.at(NOW + 2 * HOUR, restarted)
    state = await journeys.sends(customer)
    assert [(s[0], s[1]) for s in state] == [(0, resolved)]
    assert len(journeys.mailbox.messages()) == (1 if delivered else 0)
    # Later steps still go out, each once.
    await journeys.at(NOW + timedelta(days=3, hours=1), restarted)
    assert [(s[0], s[1]) for s in await journeys.sends(customer)] == [(0, resolved), (1, "sent")]
    assert len(journeys.mailbox.messages()) == (2 if delivered else 1)


async def test_a_temporary_smtp_refusal_is_retried_and_sent_once(journeys: Journeys) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    await journeys.change(customer, "new-customer")
    journeys.mailbox.refuse_next(1, 451)
    scheduler = journeys.scheduler()
    await journeys.at(NOW + HOUR, scheduler)
    assert journeys.mailbox.messages() == []
    [(step, state, deferrals, _)] = await journeys.sends(customer)
    assert (step, state, deferrals) == (0, "deferred", 1)

    await journeys.at(NOW + 2 * HOUR, scheduler)
    assert len(journeys.mailbox.messages()) == 1
    assert [(s[0], s[1]) for s in await journeys.sends(customer)] == [(0, "sent")]


async def test_the_cap_across_journeys_defers_and_never_drops(journeys: Journeys) -> None:
    journeys.settings = journeys.settings.model_copy(update={"journey_cap_emails": 1})
    welcome = set(await journeys.ids_in("welcome", Group.TREATED, 50))
    vip = set(await journeys.ids_in("vip-care", Group.TREATED, 50))
    customer = min(welcome & vip)
    await journeys.customer(customer, segments=("new-customer", "vip"))
    await journeys.change(customer, "vip")
    await journeys.change(customer, "new-customer")
    scheduler = journeys.scheduler()

    await journeys.at(NOW, scheduler)  # the VIP offer goes at entry
    await journeys.at(NOW + HOUR, scheduler)  # the welcome is due, but one a day is the cap
    assert len(journeys.mailbox.messages()) == 1
    held = await journeys.enrolment(customer, "welcome")
    assert held["step_index"] == 0 and held["next_due_at"] == NOW + timedelta(days=1)
    [(step, state, deferrals, _)] = [
        s for s in await journeys.sends(customer) if s[1] == "deferred"
    ]
    assert (step, state, deferrals) == (0, "deferred", 1)

    await journeys.at(NOW + timedelta(days=1), scheduler)
    assert len(journeys.mailbox.messages()) == 2
    assert (await journeys.enrolment(customer, "welcome"))["step_index"] == 1


async def test_a_step_always_answered_try_later_is_given_up_not_sent(journeys: Journeys) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    await journeys.change(customer, "new-customer")
    journeys.mailbox.refuse_next(MAX_SMTP_ATTEMPTS, 451)
    scheduler = journeys.scheduler()
    for hour in range(1, MAX_SMTP_ATTEMPTS + 2):
        await journeys.at(NOW + hour * HOUR, scheduler)
    assert journeys.mailbox.messages() == []
    [(step, state, _, _)] = [s for s in await journeys.sends(customer) if s[0] == 0]
    assert (step, state) == (0, "failed")
    attempts = await journeys.db.fetchval("SELECT smtp_attempts FROM journey_sends LIMIT 1")
    assert attempts == MAX_SMTP_ATTEMPTS
