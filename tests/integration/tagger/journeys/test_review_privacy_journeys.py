"""Hostile review of the privacy work (issue 14): the one-click unsubscribe link of a journey
email sent before customers/redact, pressed after it (the mail stays in the customer's
mailbox). Real PostgreSQL, real SMTP mailbox, the tagger's app over HTTP. Expected to fail
until the finding is fixed."""

import httpx

from services.common.privacy import CUSTOMER_TABLES
from services.tagger.journeys.holdout import Group
from tests.integration.common.test_privacy import envelope, redact_payload, rows_of, run
from tests.integration.tagger.journeys.support import HOUR, NOW, Journeys
from tests.integration.tagger.journeys.test_journey_enrolment import batch, worker
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
