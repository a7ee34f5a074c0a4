"""The journeys API over real HTTP: CRUD with versioning and JSON errors naming the field,
another shop's journey is a 404, a customer's enrolments, and the stats of a journey counting
treated and holdout entrants, sends, suppressions and conversions from the stored records."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx

from services.common.shops import create_shop
from services.tagger.journeys.enrolment import OrderPlaced
from services.tagger.journeys.holdout import Group
from services.tagger.journeys_store import apply_order
from tests.integration.tagger.journeys.support import HOUR, NOW, Journeys


def journey_body(handle: str = "thanks", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "handle": handle,
        "name": "Thank you",
        "trigger": {"segment": "repeat-customer"},
        "steps": [{"key": "thanks", "timing": {"after": "PT2H"}, "template": "welcome.hello"}],
    }
    body.update(changes)
    return body


async def token_of(journeys: Journeys) -> str:
    # The shop fixture's credentials are not kept by the journeys fixture: issue new ones.
    domain = await journeys.db.fetchval("SELECT domain FROM shops WHERE id = $1", journeys.shop_id)
    created = await create_shop(journeys.db, domain, replace=True)
    return created.api_token


async def test_journeys_crud_versions_and_errors(journeys: Journeys, tagger_url: str) -> None:
    token = await token_of(journeys)
    other = await create_shop(journeys.db, "other-shop.myshopify.com")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=tagger_url, headers=auth) as http:
        listed = (await http.get("/v1/journeys")).json()["journeys"]
        assert [j["handle"] for j in listed] == ["welcome", "vip-care", "win-back"]

        created = await http.post("/v1/journeys", json=journey_body())
        assert created.status_code == 201, created.text
        journey = created.json()
        assert journey["version"] == 1 and journey["steps"][0]["timing"] == {"after": "PT2H"}
        path = f"/v1/journeys/{journey['id']}"

        taken = await http.post("/v1/journeys", json=journey_body())
        assert taken.status_code == 409 and taken.json()["error"]["field"] == "handle"
        bad = await http.post(
            "/v1/journeys",
            json=journey_body("bad", steps=[{"key": "x", "timing": {}, "template": "a"}]),
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["field"].startswith("steps[0].timing")

        # A rename is not a new version; a changed delay is.
        renamed = await http.put(path, json=journey_body(name="Thanks!"))
        assert renamed.status_code == 200 and renamed.json()["version"] == 1
        assert renamed.json()["name"] == "Thanks!"
        steps = [{"key": "thanks", "timing": {"after": "PT3H"}, "template": "welcome.hello"}]
        edited = await http.put(path, json=journey_body(name="Thanks!", steps=steps))
        assert edited.json()["version"] == 2
        assert (await http.get(path)).json()["steps"][0]["timing"] == {"after": "PT3H"}
        clash = await http.put(path, json=journey_body("welcome"))
        assert clash.status_code == 409 and clash.json()["error"]["field"] == "handle"

        # Another shop's token sees none of it.
        theirs = {"Authorization": f"Bearer {other.api_token}"}
        assert (await http.get(path, headers=theirs)).status_code == 404
        assert (await http.delete(path, headers=theirs)).status_code == 404

        assert (await http.delete(path)).status_code == 204
        assert (await http.get(path)).status_code == 404
        assert (await http.get("/v1/journeys/x")).status_code == 404


async def test_enrolments_and_stats_count_both_groups(journeys: Journeys, tagger_url: str) -> None:
    treated = await journeys.ids_in("welcome", Group.TREATED, 3)
    held = await journeys.ids_in("welcome", Group.HOLDOUT, 2)
    for customer in treated + held:
        await journeys.customer(customer)
        await journeys.change(customer, "new-customer")
    await journeys.at(NOW + HOUR, journeys.scheduler())
    assert len(journeys.mailbox.messages()) == 3
    # One order in each group within the window; a replayed one counts once.
    orders = [
        OrderPlaced(901, treated[0], NOW + 2 * HOUR, Decimal("80.00")),
        OrderPlaced(902, held[0], NOW + 3 * HOUR, Decimal("20.00")),
        OrderPlaced(901, treated[0], NOW + 2 * HOUR, Decimal("80.00")),
    ]
    for order in orders:
        async with journeys.pool.acquire() as conn, conn.transaction():
            await apply_order(conn, journeys.shop_id, order, NOW + 4 * HOUR)

    token = await token_of(journeys)
    welcome = await journeys.journey_id("welcome")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=tagger_url, headers=auth) as http:
        report = (await http.get(f"/v1/journeys/{welcome}/stats")).json()
        mine = (await http.get(f"/v1/customers/{treated[1]}/enrolments")).json()
    assert report["treated"]["entered"] == 3 and report["holdout"]["entered"] == 2
    assert report["treated"]["sent"] == 3 and report["holdout"]["sent"] == 2
    assert report["treated"]["converted"] == 1 and report["holdout"]["converted"] == 1
    # The order was the goal: both buyers left the journey.
    assert report["treated"]["exited"] == 1 and report["holdout"]["exited"] == 1
    assert report["treated"]["revenue"] == "80.00" and report["holdout"]["revenue"] == "20.00"
    assert report["absolute_lift"] is not None
    assert "incremental_revenue" in report and "minimum_detectable_effect" in report
    [enrolment] = mine["enrolments"]
    assert enrolment["journey"] == "welcome" and enrolment["state"] == "active"
    assert enrolment["steps_sent"] == 1 and enrolment["next_step"] == 1
    assert enrolment["next_due_at"] == (NOW + timedelta(days=3)).isoformat()


async def test_the_tag_routes_show_one_shops_data_only(journeys: Journeys, tagger_url: str) -> None:
    """A customer's managed tags, pending and parked work: another shop sees a 404 or nothing."""
    db, shop_id = journeys.db, journeys.shop_id
    await db.execute(
        "INSERT INTO customers (shop_id, customer_id) VALUES ($1, 77) ON CONFLICT DO NOTHING",
        shop_id,
    )
    await db.execute(
        "INSERT INTO tag_ledger (shop_id, customer_id, tag_key, tag, state, changed_at)"
        " VALUES ($1, 77, 'vip', 'VIP', 'added', $2)",
        shop_id,
        NOW,
    )
    await db.execute(
        "INSERT INTO tag_work (shop_id, customer_id, parked_at, last_error)"
        " VALUES ($1, 77, $2, 'Shopify unavailable')",
        shop_id,
        NOW,
    )
    own = await token_of(journeys)
    other = (await create_shop(db, "other-shop.myshopify.com")).api_token
    async with httpx.AsyncClient(base_url=tagger_url) as http:
        mine = {"Authorization": f"Bearer {own}"}
        theirs = {"Authorization": f"Bearer {other}"}
        tags = await http.get("/v1/customers/77/tags", headers=mine)
        assert tags.status_code == 200 and tags.json()["tags"][0]["tag"] == "VIP"
        assert (await http.get("/v1/tags/parked", headers=mine)).json()["parked"] != []
        hidden = await http.get("/v1/customers/77/tags", headers=theirs)
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
        assert (await http.get("/v1/tags/parked", headers=theirs)).json() == {"parked": []}
        assert (await http.get("/v1/tags/pending", headers=theirs)).json() == {"pending": []}
        assert (await http.get("/v1/customers/77/tags")).status_code == 401
