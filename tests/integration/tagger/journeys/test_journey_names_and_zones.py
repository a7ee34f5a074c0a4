"""The scheduler with a real PostgreSQL and SMTP mailbox: the customer's first name from the
segmenter's profile greets them (escaped in HTML), and the shop's time zone decides quiet hours
for a customer whose address gives none (UTC while the shop's zone is unknown)."""

from datetime import timedelta

import pytest

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


async def test_the_shops_zone_makes_now_quiet_for_a_customer_without_address(
    journeys: Journeys,
) -> None:
    (customer,) = await journeys.ids_in("welcome", Group.TREATED, 1)
    await journeys.customer(customer)
    # 13:00 UTC is 22:00 in Tokyo: inside the shipped quiet hours (21:00-09:00) there.
    await set_zone(journeys, "Asia/Tokyo")
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
