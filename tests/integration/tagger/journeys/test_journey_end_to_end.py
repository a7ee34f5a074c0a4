"""Order webhooks through ingest, Kafka, the segmenter and the tagger (its consumer and send
scheduler, on the real clock) to journey email in the local mailbox: a subscribed customer
who becomes a VIP gets the VIP offer, greeted by the first name the webhook gave; one without
marketing consent gets nothing; a holdout entrant gets nothing, is recorded suppressed and
counted in the journey's stats."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.api.app import create_app
from services.common.metrics import new_registry
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.common.signing import sign_webhook
from services.segmenter.runtime.metrics import SegmenterMetrics
from services.segmenter.runtime.service import run_segmenter
from services.tagger.journeys.holdout import Group, assign_group
from services.tagger.metrics import TaggerMetrics
from services.tagger.service import TaggerHealth, run_tagger
from services.tagger.shopify.metrics import ShopifyClientMetrics
from tests.helpers import start_server
from tests.integration.tagger.journeys.support import Journeys, midday_zone


@pytest.fixture
async def segmenter(settings: Settings) -> AsyncIterator[None]:
    """The segmenter (worker, scheduler, REST API) running in this loop."""
    registry = new_registry()
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        run_segmenter(settings, SegmenterMetrics.create(registry), stop, started=started)
    )
    server = make_server(create_app(settings, registry=registry), "127.0.0.1", settings.api_port)
    api = await start_server(server)
    async with asyncio.timeout(30):
        await started.wait()
    yield
    stop.set()
    server.should_exit = True
    await api
    await task


@pytest.fixture
async def tagger(journeys: Journeys) -> AsyncIterator[TaggerHealth]:
    """`run_tagger` in this loop with the journeys' settings: consumer, reconciler, scheduler."""
    settings = journeys.settings.model_copy(
        update={
            "tagger_interval_seconds": 0.05,
            "journey_default_timezone": midday_zone(datetime.now(UTC)),
        }
    )
    registry = CollectorRegistry()
    health = TaggerHealth()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_tagger(
            settings,
            TaggerMetrics.create(registry),
            ShopifyClientMetrics.create(registry),
            stop,
            health,
        )
    )
    yield health
    stop.set()
    await task


async def post_webhook(url: str, shop: ShopCredentials, topic: str, payload: Any, n: int) -> None:
    body = json.dumps(payload).encode()
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop.domain,
        "X-Shopify-Hmac-Sha256": sign_webhook(body, shop.webhook_secret),
        "X-Shopify-Webhook-Id": f"w-{n}",
        "X-Shopify-Event-Id": f"e-{n}",
        "X-Shopify-API-Version": "2025-07",
    }
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert response.status_code == 200, response.text


async def vip_order(
    url: str,
    shop: ShopCredentials,
    customer: int,
    consent: str,
    n: int,
    first_name: str | None = None,
) -> None:
    now = datetime.now(UTC)
    profile = {
        "id": customer,
        "first_name": first_name,
        "email": f"customer-{customer}@example.com",
        "created_at": (now - timedelta(days=2)).isoformat(),
        "updated_at": (now - timedelta(days=2)).isoformat(),
        "email_marketing_consent": {"state": consent, "opt_in_level": "single_opt_in"},
    }
    order = {
        "id": 450789000 + n,
        "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
        "total_price": "1500.00",
        "customer": profile,
        "line_items": [{"id": 1, "product_id": 632910392, "quantity": 1, "price": "1500.00"}],
    }
    await post_webhook(url, shop, "customers/create", profile, 2 * n)
    await post_webhook(url, shop, "orders/create", order, 2 * n + 1)


async def vip_steps(db: asyncpg.Connection, customer: int) -> list[tuple[int, str, str | None]]:
    rows = await db.fetch(
        "SELECT s.step_index, s.state, s.error FROM journey_sends s"
        " JOIN journey_enrolments e ON e.id = s.enrolment_id"
        " JOIN journeys j ON j.id = e.journey_id"
        " WHERE j.handle = 'vip-care' AND e.customer_id = $1 ORDER BY s.step_index",
        customer,
    )
    return [(r["step_index"], r["state"], r["error"]) for r in rows]


async def test_an_order_webhook_ends_as_the_vip_email_in_the_mailbox(
    journeys: Journeys,
    ingest_url: str,
    segmenter: None,
    tagger: TaggerHealth,
    tagger_url: str,
    shop: ShopCredentials,
    db: asyncpg.Connection,
) -> None:
    vip = await journeys.journey_id("vip-care")
    treated = [
        c for c in range(7001, 7100) if assign_group(vip, c, Decimal("0.1")) is Group.TREATED
    ]
    held = next(
        c for c in range(7001, 8000) if assign_group(vip, c, Decimal("0.1")) is Group.HOLDOUT
    )
    subscribed, unsubscribed = treated[:2]
    await vip_order(ingest_url, shop, subscribed, "subscribed", 1, first_name="Ada <i>")
    await vip_order(ingest_url, shop, unsubscribed, "not_subscribed", 2)
    await vip_order(ingest_url, shop, held, "subscribed", 3)

    [message] = await journeys.mailbox.wait_for_messages(1, timeout=30)
    email = message.parse()
    assert email["To"] == f"customer-{subscribed}@example.com"
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "WELCOME10" in text
    # The name the webhook carried, kept by the segmenter, greets them (escaped in HTML).
    assert "Hi Ada <i>," in text
    html = email.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hi Ada &lt;i&gt;," in html
    async with asyncio.timeout(15):
        while not all([len(await vip_steps(db, c)) == 2 for c in (subscribed, unsubscribed, held)]):
            await asyncio.sleep(0.05)
    # The birthday step needs a birthday this customer has not given: skipped.
    assert await vip_steps(db, subscribed) == [
        (0, "sent", None),
        (1, "skipped", "birthday_unknown"),
    ]

    assert (await vip_steps(db, unsubscribed))[0] == (0, "skipped", "no_marketing_consent")
    assert (await vip_steps(db, held))[0] == (0, "suppressed", None)
    assert len(journeys.mailbox.messages()) == 1
    # Each of them entered the welcome series too (a new customer): its first email is due
    # in an hour, not now.
    welcome = await db.fetchval(
        "SELECT count(*) FROM journey_enrolments e JOIN journeys j ON j.id = e.journey_id"
        " WHERE j.handle = 'welcome' AND e.next_due_at > now() + interval '50 minutes'"
    )
    assert welcome == 3

    # The stats count the holdout entrant, whose offer was suppressed, against the treated.
    auth = {"Authorization": f"Bearer {shop.api_token}"}
    async with httpx.AsyncClient(base_url=tagger_url, headers=auth) as http:
        report = (await http.get(f"/v1/journeys/{vip}/stats")).json()
    assert (report["treated"]["entered"], report["treated"]["sent"]) == (2, 1)
    assert (report["holdout"]["entered"], report["holdout"]["sent"]) == (1, 1)
