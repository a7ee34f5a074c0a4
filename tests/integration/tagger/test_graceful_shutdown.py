"""SIGTERM to a real `segflow tagger` with a journey email or a Shopify tag write in flight: it
refuses new connections, finishes what it had started (the email being handed over, recorded
sent; the batch of tag writes, recorded), starts nothing new (its round's other emails are put
back unsent), and exits 0 within SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS; a restart does the rest,
sending no email twice."""

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.dev.mailbox import MailboxStore
from services.tagger.journeys.holdout import Group
from tests.integration.roles import BOUND_SECONDS, RoleProcess, role_env
from tests.integration.segmenter.processes import poll
from tests.integration.tagger.journeys.support import KEYS, Journeys, journeys, midday_zone
from tests.integration.tagger.test_tag_reconciler import Tagging, tagging, vip_segment

__all__ = ["journeys", "tagging"]  # the fixtures these tests use

CUSTOMERS = 20
BATCH = 5  # SEGFLOW_TAGGER_BATCH_SIZE: a round's emails, a lane batch's customers


class HeldStore(MailboxStore):
    """The local mailbox's store, holding the first message it is given until `release` is
    set: the SMTP server then answers that DATA only when the test says (an email in flight)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.arrived = threading.Event()
        self.release = threading.Event()

    def save(self, raw: bytes, received_at: datetime) -> Path:
        if not self.arrived.is_set():
            self.arrived.set()
            self.release.wait(timeout=30)
        return super().save(raw, received_at)


async def _sends(journeys: Journeys) -> Counter[str]:
    rows = await journeys.db.fetch("SELECT state FROM journey_sends")
    return Counter(row["state"] for row in rows)


async def _restart_until_the_queue_is_empty(
    t: Tagging, env: dict[str, str], tmp_path: Path, waiting_for: str
) -> None:
    """Start the tagger again, wait until no tag work is left, and stop it (exit 0)."""
    again = RoleProcess("tagger", env, tmp_path / "again.log").start()
    try:

        async def queue_empty() -> bool:
            again.assert_alive()
            return bool(await t.db.fetchval("SELECT count(*) FROM tag_work") == 0)

        await poll(queue_empty, 30, waiting_for)
    finally:
        assert await again.stop() == 0, again.log_tail()


async def test_sigterm_with_an_email_in_flight_sends_it_once_and_the_restart_the_rest(
    journeys: Journeys, tmp_path: Path
) -> None:
    customers = await journeys.ids_in("welcome", Group.TREATED, CUSTOMERS)
    # Entered two hours ago on the real clock: every welcome email is due now.
    journeys.clock.now = datetime.now(UTC) - timedelta(hours=2)
    for customer in customers:
        await journeys.customer(customer)
        await journeys.change(customer, "new-customer")
    store = HeldStore(journeys.mailbox.store.directory)
    journeys.mailbox.store = store
    env = role_env(
        journeys.settings,
        SEGFLOW_SMTP_PORT=str(journeys.mailbox.port),
        SEGFLOW_SMTP_TIMEOUT_SECONDS="10",
        SEGFLOW_JOURNEY_SEND_LEASE_SECONDS="60",
        SEGFLOW_MAILBOX_DIR=str(store.directory),
        SEGFLOW_UNSUBSCRIBE_KEYS=KEYS,
        SEGFLOW_JOURNEY_DEFAULT_TIMEZONE=midday_zone(datetime.now(UTC)),
        SEGFLOW_TAGGER_INTERVAL_SECONDS="0.05",
        SEGFLOW_TAGGER_BATCH_SIZE=str(BATCH),
    )
    tagger = RoleProcess("tagger", env, tmp_path / "tagger.log").start()
    try:

        async def held() -> bool:
            tagger.assert_alive()
            return store.arrived.is_set()

        await poll(held, 30, "the first journey email to reach SMTP")
        assert (await _sends(journeys))["sending"] == BATCH
        signalled = tagger.terminate()

        async def refusing() -> bool:
            tagger.assert_alive()  # still in the round: the email is not handed over
            return await tagger.refuses_connections()

        await poll(refusing, BOUND_SECONDS / 2, "new connections to be refused while draining")
        store.release.set()
        code, took = await tagger.exit_after(signalled, BOUND_SECONDS + 5)
    finally:
        store.release.set()
        await tagger.stop()
    assert code == 0, tagger.log_tail()
    assert took < BOUND_SECONDS, f"took {took:.1f} s to exit"
    # The email in flight was finished; the rest of its round waits, surely not sent.
    assert await _sends(journeys) == {"sent": 1, "deferred": BATCH - 1}, tagger.log_tail()
    assert len(store.messages()) == 1

    again = RoleProcess("tagger", env, tmp_path / "again.log").start()
    try:

        async def all_sent() -> bool:
            again.assert_alive()
            return await _sends(journeys) == {"sent": CUSTOMERS}

        await poll(all_sent, 30, "the restart to send the rest")
    finally:
        assert await again.stop() == 0, again.log_tail()
    recipients = Counter(message.parse()["To"] for message in store.messages())
    assert recipients == {f"customer-{c}@example.com": 1 for c in customers}


async def test_sigterm_with_tag_writes_in_flight_finishes_their_batch_and_starts_no_other(
    tagging: Tagging, tmp_path: Path
) -> None:
    t = tagging
    customers = list(range(1, CUSTOMERS + 1))
    await t.customers(dict.fromkeys(customers, "1500"), {})
    await vip_segment(t)
    # Shopify answers the lane's first request after 1.5 s: its batch is in flight meanwhile.
    slow = {"kind": "slow", "delay_ms": 1500, "count": 1}
    assert (await t.http.post(f"/_standin/shops/{t.domain}/faults", json=slow)).is_success
    await t.mark(*customers)
    sealing = t.settings.sealing_keys
    assert sealing is not None
    env = role_env(
        t.settings,
        SEGFLOW_SEALING_KEYS=sealing.get_secret_value(),
        SEGFLOW_TAGGER_INTERVAL_SECONDS="0.05",
        SEGFLOW_TAGGER_BATCH_SIZE=str(BATCH),
    )
    tagger = RoleProcess("tagger", env, tmp_path / "tagger.log").start()
    try:

        async def leased() -> bool:
            tagger.assert_alive()
            return bool(
                await t.db.fetchval("SELECT count(*) FROM tag_work WHERE leased_until > now()")
            )

        await poll(leased, 30, "the reconciler to take a batch")
        signalled = tagger.terminate()

        async def refusing() -> bool:
            tagger.assert_alive()  # still waiting on Shopify's slow answer
            return await tagger.refuses_connections()

        await poll(refusing, 1.0, "new connections to be refused while draining")
        code, took = await tagger.exit_after(signalled, BOUND_SECONDS + 5)
    finally:
        await tagger.stop()
    assert code == 0, tagger.log_tail()
    assert took < BOUND_SECONDS, f"took {took:.1f} s to exit"
    tagged = [c for c in customers if await t.tags_on_shopify(c) == ["VIP"]]
    assert len(tagged) == BATCH, tagged
    left = await t.db.fetch("SELECT customer_id, leased_until FROM tag_work ORDER BY 1")
    assert [row["customer_id"] for row in left] == sorted(set(customers) - set(tagged))
    assert all(row["leased_until"] is None for row in left), "a lease outlived the process"

    await _restart_until_the_queue_is_empty(t, env, tmp_path, "the restart to write the rest")
    for customer in customers:
        assert await t.tags_on_shopify(customer) == ["VIP"]
        assert await t.ledger(customer) == {"vip": "added"}
    # One tagsAdd per customer: the batch in flight at SIGTERM was recorded, not redone.
    adds = [r for r in await t.requests() if r["operation"] == "tagsAdd"]
    assert len(adds) == CUSTOMERS, len(adds)


async def test_sigterm_while_a_bulk_operation_runs_leaves_it_to_be_read_not_sent_again(
    tagging: Tagging, tmp_path: Path
) -> None:
    t = tagging
    customers = list(range(1, CUSTOMERS + 1))
    await t.customers(dict.fromkeys(customers, "1500"), {})
    await vip_segment(t)
    # The bulk mutation waits 4 s on Shopify before it runs: the tagger polls it meanwhile.
    hold = {"kind": "bulk", "delay_ms": 4000}
    assert (await t.http.post(f"/_standin/shops/{t.domain}/faults", json=hold)).is_success
    await t.mark(*customers, bulk=True)
    sealing = t.settings.sealing_keys
    assert sealing is not None
    env = role_env(
        t.settings,
        SEGFLOW_SEALING_KEYS=sealing.get_secret_value(),
        SEGFLOW_TAGGER_INTERVAL_SECONDS="0.05",
        SEGFLOW_TAGGER_BULK_THRESHOLD=str(BATCH),
        SEGFLOW_TAGGER_BULK_REPOLL_SECONDS="0.2",
    )
    tagger = RoleProcess("tagger", env, tmp_path / "tagger.log").start()
    try:

        async def polling() -> bool:
            tagger.assert_alive()
            operations = [r["operation"] for r in await t.requests()]
            return "bulkOperationRunMutation" in operations

        await poll(polling, 30, "the bulk mutation to start")
        signalled = tagger.terminate()
        code, took = await tagger.exit_after(signalled, BOUND_SECONDS + 5)
    finally:
        await tagger.stop()
    assert code == 0, tagger.log_tail()
    assert took < BOUND_SECONDS, f"took {took:.1f} s to exit"
    # Not waited for (it would have been read and settled then): recorded, to be read later.
    late = await t.db.fetchval("SELECT count(*) FROM tag_bulk_operations")
    assert late == 1, "the running operation was waited for, not recorded to be read later"

    await _restart_until_the_queue_is_empty(
        t, env, tmp_path, "the restart to read the operation's result"
    )
    assert [c for c in customers if await t.tags_on_shopify(c) != ["VIP"]] == []
    operations = [r["operation"] for r in await t.requests()]
    assert operations.count("bulkOperationRunMutation") == 1, operations
    assert "tagsAdd" not in operations
