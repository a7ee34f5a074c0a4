"""The scheduler with a real PostgreSQL and SMTP mailbox: the customer's first name from the
segmenter's profile greets them (escaped in HTML), and the shop's time zone decides quiet hours
for a customer whose address gives none (UTC while the shop's zone is unknown)."""

from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr

from services.common.sealing import new_key_text
from services.shopify_standin.server import RunningStandin
from services.tagger.connections import connect_shop
from services.tagger.journeys.holdout import Group
from tests.integration.tagger.journeys.support import HOUR, NOW, Journeys


def bodies(journeys: Journeys, index: int = 0) -> tuple[str, str]:
    email = journeys.mailbox.messages()[index].parse()
    text = email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text, html


async def test_the_first_name_in_the_profile_greets_the_customer(journeys: Journeys) -> None:
    named, unnamed = await journeys.ids_in("welcome", Group.TREATED, 2)
    await journeys.customer(named, first_name="Zoë <b>")
    await journeys.customer(unnamed)
    for customer in (named, unnamed):
        await journeys.change(customer, "new-customer")
    await journeys.at(NOW + HOUR, journeys.scheduler())

    assert len(journeys.mailbox.messages()) == 2
    by_to = {m.parse()["To"]: i for i, m in enumerate(journeys.mailbox.messages())}
    text, html = bodies(journeys, by_to[f"customer-{named}@example.com"])
    assert "Hi Zoë <b>," in text
    assert "Hi Zoë &lt;b&gt;," in html and "Zoë <b>" not in html
    text, _ = bodies(journeys, by_to[f"customer-{unnamed}@example.com"])
    assert "Hi there," in text


async def set_zone(journeys: Journeys, zone: str | None) -> None:
    await journeys.db.execute(
        "UPDATE shops SET iana_timezone = $2 WHERE id = $1", journeys.shop_id, zone
    )


async def connect(journeys: Journeys, standin: RunningStandin, domain: str) -> None:
    """`segflow shops connect`'s work against the stand-in shop (its token is the domain's)."""
    settings = journeys.settings.model_copy(
        update={"sealing_keys": SecretStr(new_key_text("test"))}
    )
    await connect_shop(
        journeys.db,
        settings,
        journeys.shop_id,
        domain,
        f"shpat_{domain.split('.')[0]}",
        admin_url=standin.url,
    )


async def stored_zone(journeys: Journeys) -> str | None:
    zone: str | None = await journeys.db.fetchval(
        "SELECT iana_timezone FROM shops WHERE id = $1", journeys.shop_id
    )
    return zone


async def shop_on_standin(
    journeys: Journeys, shopify_standin: RunningStandin, domain: str, zone: str
) -> None:
    """Give the journeys' shop the stand-in's domain and create it there in `zone`."""
    await journeys.db.execute(
        "UPDATE shops SET domain = $2 WHERE id = $1", journeys.shop_id, domain
    )
    async with httpx.AsyncClient(base_url=shopify_standin.url) as shopify:
        created = await shopify.post(
            "/_standin/shops",
            json={
                "domain": domain,
                "access_token": f"shpat_{domain.split('.')[0]}",
                "webhook_secret": "s",
                "iana_timezone": zone,
            },
        )
        assert created.status_code == 201, created.text


async def test_connect_reads_the_shops_zone_and_a_reconnect_refreshes_it(
    journeys: Journeys, shopify_standin: RunningStandin, standin_domain: str
) -> None:
    assert await stored_zone(journeys) is None  # never connected: unknown
    await shop_on_standin(journeys, shopify_standin, standin_domain, "Asia/Tokyo")
    async with httpx.AsyncClient(base_url=shopify_standin.url) as shopify:
        await connect(journeys, shopify_standin, standin_domain)
        assert await stored_zone(journeys) == "Asia/Tokyo"

        # The merchant moves the shop to Paris; connecting again reads the new zone.
        changed = await shopify.patch(
            f"/_standin/shops/{standin_domain}", json={"iana_timezone": "Europe/Paris"}
        )
        assert changed.json()["iana_timezone"] == "Europe/Paris"
        await connect(journeys, shopify_standin, standin_domain)
        assert await stored_zone(journeys) == "Europe/Paris"
        refused = await shopify.patch(
            f"/_standin/shops/{standin_domain}", json={"iana_timezone": "Mars/Base"}
        )
        assert refused.status_code == 400


async def test_the_shops_zone_makes_now_quiet_for_a_customer_without_address(
    journeys: Journeys, shopify_standin: RunningStandin, standin_domain: str
) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    # 13:00 UTC is 22:00 in Tokyo: inside the shipped quiet hours (21:00-09:00) there. The
    # zone comes from Shopify's shop settings, read when the shop is connected.
    await shop_on_standin(journeys, shopify_standin, standin_domain, "Asia/Tokyo")
    await connect(journeys, shopify_standin, standin_domain)
    await journeys.change(customer, "new-customer")
    await journeys.at(NOW + HOUR, journeys.scheduler())

    assert journeys.mailbox.messages() == []
    assert await journeys.sends(customer) == [(0, "deferred", 1, None)]
    # Deferred to 09:00 Tokyo, 00:00 UTC the next day, and sent then.
    assert (await journeys.enrolment(customer))["next_due_at"] == NOW.replace(hour=0) + timedelta(
        days=1
    )
    await journeys.at(NOW.replace(hour=0) + timedelta(days=1), journeys.scheduler())
    assert len(journeys.mailbox.messages()) == 1


@pytest.mark.parametrize("zone", ["UTC", None, "Mars/Olympus_Mons"])
async def test_the_same_customer_in_a_utc_shop_or_one_of_unknown_zone_is_sent(
    journeys: Journeys, zone: str | None
) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    # UTC; never connected (NULL); a name this machine's zone database does not know.
    await set_zone(journeys, zone)
    await journeys.change(customer, "new-customer")
    await journeys.at(NOW + HOUR, journeys.scheduler())
    assert await journeys.sends(customer) == [(0, "sent", 0, None)]
    assert len(journeys.mailbox.messages()) == 1


async def test_an_address_zone_wins_over_the_shops(journeys: Journeys) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer, country="GB")  # 13:00 UTC in June is 14:00 in London
    await set_zone(journeys, "Asia/Tokyo")
    await journeys.change(customer, "new-customer")
    await journeys.at(NOW + HOUR, journeys.scheduler())
    assert await journeys.sends(customer) == [(0, "sent", 0, None)]
