"""Hostile review of the privacy work (issue 14): the one-click unsubscribe link of a journey
email sent before customers/redact, pressed after it (the mail stays in the customer's
mailbox). Real PostgreSQL, real SMTP mailbox, the tagger's app over HTTP. Expected to fail
until the finding is fixed."""

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from services.common.privacy import CUSTOMER_TABLES
from services.tagger.journeys.holdout import Group
from services.tagger.worker import Redaction
from tests.integration.common.test_privacy import envelope, redact_payload, rows_of, run
from tests.integration.tagger.journeys.support import HOUR, NOW, Journeys
from tests.integration.tagger.journeys.test_journey_enrolment import batch, change_value, worker
from tests.unit.segmenter.events import shopify_event


async def test_review_privacy_an_old_unsubscribe_link_brings_no_erased_customer_back(
    journeys: Journeys, tagger_url: str
) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    email = f"customer-{customer}@example.com"
    await journeys.customer(customer, email=email)
    await journeys.change(customer, "new-customer")
    await journeys.at(NOW + HOUR, journeys.scheduler())
    [message] = journeys.mailbox.messages()
    link = str(message.parse()["List-Unsubscribe"]).strip("<>")
    path = link.removeprefix(journeys.settings.require_unsubscribe_base_url())

    # customers/redact, read by the segmenter and by the tagger.
    payload = redact_payload(customer, email, [])
    await run(
        journeys.db,
        journeys.shop_id,
        shopify_event("customers/redact", payload, event_id="redact-1"),
    )
    record = envelope(journeys.domain, "customers/redact", payload, "redact-1")
    settings = journeys.settings
    await worker(settings, journeys.pool).process(batch(settings.topic_events, [record]))
    assert await rows_of(journeys.db, journeys.shop_id, customer) == dict.fromkeys(
        CUSTOMER_TABLES, 0
    )

    # The customer still has the email, and presses its unsubscribe button.
    async with httpx.AsyncClient(base_url=tagger_url) as http:
        pressed = await http.post(path, content=b"List-Unsubscribe=One-Click")
    assert pressed.status_code in (200, 404), pressed.text
    # Nothing of the erased customer is kept again, nor queued for a write-back to Shopify.
    assert await rows_of(journeys.db, journeys.shop_id, customer) == dict.fromkeys(
        CUSTOMER_TABLES, 0
    )


async def test_review_privacy_a_segment_change_racing_the_taggers_erasure_enrols_no_one(
    journeys: Journeys,
) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    settings = journeys.settings
    # The segment change was published before the redaction; the tagger reads the two topics
    # in different consumers (replicas), here at the same time, the redaction first.
    change = change_value(journeys.domain, customer, 7, "new-customer", "entered")
    async with journeys.pool.acquire() as eraser:
        erasing = eraser.transaction()
        await erasing.start()
        await worker(settings, journeys.pool)._apply(
            eraser, [], [], [], [], [Redaction(journeys.domain, customer)]
        )
        enrolling = asyncio.create_task(
            worker(settings, journeys.pool).process(batch(settings.topic_segment_changes, [change]))
        )
        # The change either waits for the erasure's locks or, holding none of them, goes
        # ahead; either way the erasure then commits first.
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while not enrolling.done() and not await journeys.db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND pid <> $1",
            eraser.get_server_pid(),
        ):
            assert datetime.now(UTC) < deadline, "the change neither waited nor finished"
            await asyncio.sleep(0.02)
        await erasing.commit()
        await asyncio.wait_for(enrolling, 20)
    # The erasure committed first: the change must not enrol the erased customer afterwards.
    counts = await rows_of(journeys.db, journeys.shop_id, customer)
    assert counts["journey_enrolments"] == 0
    assert counts["tag_work"] == 0
