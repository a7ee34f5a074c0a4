"""One-click unsubscribe over real HTTP on the tagger's app: the link from a real journey email
changes our state (override, enrolment exited, no more mail) and, through the write-back,
the customer's consent on the Shopify stand-in, also when Shopify fails at first; the GET
page changes nothing; a forged token is a 404."""

import asyncio
import random
from datetime import timedelta

import httpx
from pydantic import SecretStr

from services.common.sealing import new_key_text
from services.segmenter.runtime.health import ComponentHealth
from services.shopify_standin.server import RunningStandin
from services.tagger.connections import ShopClients, connect_shop
from services.tagger.consent_sync import ConsentWriteback
from services.tagger.journeys.holdout import Group
from tests.integration.tagger.journeys.support import HOUR, NOW, Journeys

SECRET = "standin-webhook-secret"


async def test_one_click_unsubscribes_here_and_on_shopify(
    journeys: Journeys, tagger_url: str, shopify_standin: RunningStandin, standin_domain: str
) -> None:
    settings = journeys.settings.model_copy(
        update={
            "sealing_keys": SecretStr(new_key_text("test")),
            "shopify_retry_attempts": 1,
            "shopify_retry_initial_seconds": 0.01,
            "retry_initial_seconds": 0.01,
            "retry_max_seconds": 0.02,
        }
    )
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    # The stand-in is shared by the session: the shop gets a domain no other test uses.
    domain = standin_domain
    await journeys.db.execute(
        "UPDATE shops SET domain = $2 WHERE id = $1", journeys.shop_id, domain
    )
    token = f"shpat_{domain.split('.')[0]}"
    async with httpx.AsyncClient(base_url=shopify_standin.url) as shopify:
        created = await shopify.post(
            "/_standin/shops",
            json={"domain": domain, "access_token": token, "webhook_secret": SECRET},
        )
        assert created.status_code == 201, created.text
        seeded = await shopify.post(
            f"/_standin/shops/{domain}/customers",
            json={
                "customers": [
                    {
                        "id": customer,
                        "email": f"customer-{customer}@example.com",
                        "email_marketing_state": "SUBSCRIBED",
                    }
                ]
            },
        )
        assert seeded.status_code < 300, seeded.text
        await connect_shop(
            journeys.db, settings, journeys.shop_id, domain, token, admin_url=shopify_standin.url
        )

        await journeys.customer(customer)
        await journeys.change(customer, "new-customer")
        scheduler = journeys.scheduler()
        await journeys.at(NOW + HOUR, scheduler)
        [message] = journeys.mailbox.messages()
        link = str(message.parse()["List-Unsubscribe"]).strip("<>")
        path = link.removeprefix(journeys.settings.require_unsubscribe_base_url())
        assert path.startswith("/unsubscribe/")

        async with httpx.AsyncClient(base_url=tagger_url) as http:
            # The visible link's page: a form, and nothing changed yet.
            page = await http.get(path)
            assert page.status_code == 200 and '<form method="post"' in page.text
            assert await journeys.db.fetchval("SELECT count(*) FROM consent_overrides") == 0
            forged = await http.post(path[:-3] + "AAA", content=b"List-Unsubscribe=One-Click")
            assert forged.status_code == 404
            # Shopify fails the first write-back: it is kept and retried.
            fault = await shopify.post(
                f"/_standin/shops/{domain}/faults", json={"kind": "status", "status": 503}
            )
            assert fault.status_code == 201, fault.text
            answer = await http.post(
                path,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code == 200 and not answer.is_redirect
            again = await http.post(path, content=b"List-Unsubscribe=One-Click")
            assert again.status_code == 200

        ended = await journeys.enrolment(customer)
        assert (ended["state"], ended["exit_reason"]) == ("exited", "unsubscribed")
        # No further step of any journey goes out.
        await journeys.at(NOW + timedelta(days=3, hours=1), scheduler)
        assert len(journeys.mailbox.messages()) == 1

        clients = ShopClients(settings, journeys.pool, rng=random.Random(7))
        writeback = ConsentWriteback(settings, journeys.pool, clients, ComponentHealth())
        try:
            assert await writeback.round()
            row = await journeys.db.fetchrow("SELECT * FROM consent_overrides")
            assert row["synced_at"] is None and row["sync_attempts"] == 1
            async with asyncio.timeout(10):
                while row["synced_at"] is None:
                    await asyncio.sleep(0.01)  # the retry is due in 10-20 ms
                    await writeback.round()
                    row = await journeys.db.fetchrow("SELECT * FROM consent_overrides")
        finally:
            await clients.close()
        on_shopify = await shopify.get(f"/_standin/shops/{domain}/customers/{customer}")
        assert on_shopify.json()["email_marketing_consent"]["state"] == "UNSUBSCRIBED"
