"""The tag reconciler against the Shopify stand-in over real HTTP, with a real PostgreSQL:
tags follow memberships, the merchant's are never claimed or removed, failures are retried
and parked (never dropped), and large changes go through the bulk mutation."""

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from services.common import privacy
from services.common.sealing import new_key_text
from services.common.settings import Settings
from services.common.shops import create_shop
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.state import CustomerState, Stamp
from services.segmenter.runtime.health import ComponentHealth
from services.segmenter.storage.queries import save_customers
from services.segmenter.storage.segments import SegmentSpec, create_segment, update_segment
from services.shopify_standin.server import RunningStandin
from services.tagger import journeys_store, storage
from services.tagger.connections import ShopClients, connect_shop
from services.tagger.journeys.enrolment import SegmentChange
from services.tagger.metrics import TaggerMetrics
from services.tagger.reconciler import TagReconciler
from services.tagger.worker import Redaction, TaggerWorker

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SECRET = "standin-webhook-secret"


def vip_rule(threshold: int) -> dict[str, Any]:
    return {"all": [{"name": "total_spent", "operator": "greater_than", "value": threshold}]}


VIP_TAG = [{"name": "add_tag", "params": {"tag": "VIP"}}]


@dataclass
class Tagging:
    """One test's shop on both sides, and a reconciler for it."""

    db: asyncpg.Connection
    standin: RunningStandin
    domain: str
    shop_id: int
    settings: Settings
    reconciler: TagReconciler
    clients: ShopClients
    http: httpx.AsyncClient

    async def customers(self, spent: dict[int, str], tags: dict[int, list[str]]) -> None:
        """Customers on Shopify (with their own tags) and in segflow (with their totals, and
        the tags Shopify's webhooks told the segmenter)."""
        seeded = [{"id": c, "tags": tags.get(c, [])} for c in spent]
        answer = await self.http.post(
            f"/_standin/shops/{self.domain}/customers", json={"customers": seeded}
        )
        assert answer.status_code < 300, answer.text
        await self.db.execute(
            "INSERT INTO customers (shop_id, customer_id) SELECT $1, unnest($2::bigint[])",
            self.shop_id,
            list(spent),
        )
        rows = []
        for customer_id, total in spent.items():
            facts = CustomerFacts(self.shop_id, customer_id, total_spent=total)  # type: ignore[arg-type]
            told = {tag: Stamp(True, NOW) for tag in tags.get(customer_id, [])}
            state = CustomerState(self.shop_id, customer_id, tags=told)
            rows.append((state, facts, NOW, None))
        await save_customers(self.db, rows)

    async def tags_on_shopify(self, customer_id: int) -> list[str]:
        answer = await self.http.get(f"/_standin/shops/{self.domain}/customers/{customer_id}")
        assert answer.status_code == 200, answer.text
        tags: list[str] = answer.json()["tags"]
        return tags

    async def requests(self) -> list[dict[str, Any]]:
        answer = await self.http.get(f"/_standin/shops/{self.domain}/requests")
        entries: list[dict[str, Any]] = answer.json()["requests"]
        return entries

    async def mark(self, *customers: int, bulk: bool = False) -> None:
        await storage.mark_tag_work(self.db, {(self.shop_id, c): bulk for c in customers})

    async def settle(self, rounds: int = 5) -> None:
        """Reconcile until the queue has nothing due (bounded)."""
        for _ in range(rounds):
            if not await self.reconciler.round():
                return

    async def ledger(self, customer_id: int) -> dict[str, str]:
        rows = await self.db.fetch(
            "SELECT tag_key, state FROM tag_ledger WHERE shop_id = $1 AND customer_id = $2",
            self.shop_id,
            customer_id,
        )
        return {r["tag_key"]: r["state"] for r in rows}


@pytest.fixture
async def tagging(
    db: asyncpg.Connection,
    pool: asyncpg.Pool,
    settings: Settings,
    shopify_standin: RunningStandin,
    standin_domain: str,
) -> AsyncIterator[Tagging]:
    settings = settings.model_copy(
        update={
            "sealing_keys": SecretStr(new_key_text("test")),
            "shopify_retry_attempts": 2,
            "shopify_retry_initial_seconds": 0.01,
            "tagger_bulk_threshold": 20,
            "tagger_max_attempts": 2,
        }
    )
    # The stand-in is shared by the session: every shop has its own token.
    token = f"shpat_{standin_domain.split('.')[0]}"
    async with httpx.AsyncClient(base_url=shopify_standin.url) as http:
        created = await http.post(
            "/_standin/shops",
            json={"domain": standin_domain, "access_token": token, "webhook_secret": SECRET},
        )
        assert created.status_code == 201, created.text
        shop = await create_shop(db, standin_domain, webhook_secret=SECRET)
        await connect_shop(
            db, settings, shop.shop_id, standin_domain, token, admin_url=shopify_standin.url
        )
        clients = ShopClients(settings, pool, rng=random.Random(7))
        reconciler = TagReconciler(
            settings,
            pool,
            clients,
            TaggerMetrics.create(CollectorRegistry()),
            ComponentHealth(),
            rng=random.Random(7),
        )
        yield Tagging(
            db, shopify_standin, standin_domain, shop.shop_id, settings, reconciler, clients, http
        )
        await clients.close()


async def vip_segment(t: Tagging, threshold: int = 1000) -> int:
    spec = SegmentSpec("vip", "VIP", "", vip_rule(threshold), VIP_TAG)
    async with t.db.transaction():
        created = await create_segment(t.db, t.shop_id, spec, NOW)
    assert created is not None
    return created[0]


async def test_entering_tags_leaving_untags_and_the_merchants_tags_stay(tagging: Tagging) -> None:
    t = tagging
    await t.customers({1: "1500", 2: "1500", 3: "10"}, {1: ["wholesale"], 2: ["vip"]})
    segment_id = await vip_segment(t)
    await t.mark(1, 2, 3)
    await t.settle()
    assert sorted(await t.tags_on_shopify(1)) == ["VIP", "wholesale"]
    # Customer 2 had the tag already (another spelling): it is the merchant's, not claimed.
    assert await t.tags_on_shopify(2) == ["vip"]
    assert await t.ledger(1) == {"vip": "added"} and await t.ledger(2) == {"vip": "merchant"}
    assert await t.tags_on_shopify(3) == []
    adds = [r for r in await t.requests() if r["operation"] == "tagsAdd"]
    assert len(adds) == 1
    # Everyone leaves: our tag goes, the merchant's tags stay.
    spec = SegmentSpec("vip", "VIP", "", vip_rule(5000), VIP_TAG)
    async with t.db.transaction():
        await update_segment(t.db, t.shop_id, segment_id, spec, NOW)
    await t.mark(1, 2, 3)
    await t.settle()
    assert await t.tags_on_shopify(1) == ["wholesale"]
    assert await t.tags_on_shopify(2) == ["vip"]
    assert await t.ledger(1) == {"vip": "removed"} and await t.ledger(2) == {}
    assert await t.db.fetchval("SELECT count(*) FROM tag_work") == 0


async def test_a_failing_shopify_is_retried_then_parked_never_dropped(tagging: Tagging) -> None:
    t = tagging
    await t.customers({1: "1500"}, {})
    await vip_segment(t)
    fault = {"kind": "status", "status": 503, "count": 100}
    assert (await t.http.post(f"/_standin/shops/{t.domain}/faults", json=fault)).is_success
    await t.mark(1)
    await t.reconciler.round()
    row = await t.db.fetchrow("SELECT * FROM tag_work")
    assert row["attempts"] == 1 and row["parked_at"] is None and "503" in row["last_error"]
    await t.db.execute("UPDATE tag_work SET due_at = now() - interval '1 second'")
    await t.reconciler.round()
    row = await t.db.fetchrow("SELECT * FROM tag_work")
    assert row["attempts"] == 2 and row["parked_at"] is not None
    parked = await t.db.fetch(storage.PARKED, t.shop_id, 10)
    assert [r["customer_id"] for r in parked] == [1]
    # Shopify answers again: the parked write goes through once it is due.
    assert (await t.http.delete(f"/_standin/shops/{t.domain}/faults")).is_success
    await t.db.execute("UPDATE tag_work SET due_at = now() - interval '1 second'")
    await t.settle()
    assert await t.tags_on_shopify(1) == ["VIP"]
    assert await t.db.fetchval("SELECT count(*) FROM tag_work") == 0


async def test_a_5xx_then_success_applies_once(tagging: Tagging) -> None:
    t = tagging
    await t.customers({1: "1500"}, {})
    await vip_segment(t)
    fault = {"kind": "status", "status": 502, "count": 1}
    assert (await t.http.post(f"/_standin/shops/{t.domain}/faults", json=fault)).is_success
    await t.mark(1)
    await t.settle()
    assert await t.tags_on_shopify(1) == ["VIP"]
    outcomes = [r["outcome"] for r in await t.requests() if r["operation"] == "tagsAdd"]
    assert outcomes.count("ok") == 1, outcomes


async def test_a_large_change_goes_through_one_bulk_mutation(tagging: Tagging) -> None:
    t = tagging
    customers = dict.fromkeys(range(1, 41), "1500")
    await t.customers(customers, {5: ["VIP"]})
    await vip_segment(t)
    await t.mark(*customers, bulk=True)
    await t.settle()
    operations = [r["operation"] for r in await t.requests()]
    assert "tagsAdd" not in operations
    assert operations.count("bulkOperationRunMutation") == 1, operations
    assert [c for c in customers if await t.tags_on_shopify(c) != ["VIP"]] == []
    assert await t.ledger(5) == {"vip": "merchant"}
    assert await t.ledger(6) == {"vip": "added"}


async def test_the_journey_gauges_follow_the_stored_enrolments(tagging: Tagging) -> None:
    """Enrolments by state and group, the due steps, read from the database each round."""
    t = tagging
    registry = CollectorRegistry()
    t.reconciler._metrics = TaggerMetrics.create(registry)
    async with t.db.transaction():
        await journeys_store.install_journeys(t.db, t.shop_id, NOW)
        changes = [
            SegmentChange(f"c-{c}", c, c, "vip", "entered", "event", NOW) for c in range(1, 21)
        ]
        await journeys_store.apply_segment_changes(t.db, t.shop_id, changes, NOW)
    await t.reconciler.round()
    groups = await t.db.fetch(
        "SELECT grp, count(*) AS n FROM journey_enrolments GROUP BY grp ORDER BY grp"
    )
    assert sum(r["n"] for r in groups) == 20
    for row in groups:
        value = registry.get_sample_value(
            "segflow_tagger_enrolments", {"state": "active", "group": row["grp"]}
        )
        assert value == row["n"]
    due = await t.db.fetchval(
        "SELECT count(*) FROM journey_enrolments WHERE state = 'active' AND next_due_at <= now()"
    )
    assert registry.get_sample_value("segflow_tagger_due_steps") == due


async def test_a_customer_erased_while_its_tags_are_written_gets_no_ledger_rows_back(
    tagging: Tagging, pool: asyncpg.Pool
) -> None:
    """customers/redact lands between a round reading the customer's work and writing what
    Shopify answered: the round waits for the erasure and then writes nothing of it."""
    t = tagging
    await t.customers({1: "1500", 2: "1500"}, {})
    await vip_segment(t)
    await t.mark(1, 2)
    tagger = TaggerWorker(
        t.settings,
        pool,
        _NoCommits(),
        TaggerMetrics.create(CollectorRegistry()),
        ComponentHealth(),
        lambda: None,
    )
    async with t.db.transaction():
        # The erasure's lock first, so the round takes the work, asks Shopify, and then has to
        # wait at its write; the erasure itself runs while it waits.
        await privacy.lock_customers(t.db, [(t.shop_id, 1)], erasing=[(t.shop_id, 1)])
        round_task = asyncio.create_task(t.reconciler.round())

        async def round_waits_at_its_write() -> bool:
            assert not round_task.done(), "the round wrote without waiting for the erasure"
            waiting = await pool.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            return bool(waiting)

        async with asyncio.timeout(30):
            while not await round_waits_at_its_write():
                await asyncio.sleep(0.05)
        # As the tagger's consumer runs it (its lock is this session's already).
        await tagger._apply(t.db, [], [], [], [], [Redaction(t.domain, 1)])
    await round_task
    assert await t.ledger(1) == {}
    assert await t.ledger(2) == {"vip": "added"}
    assert await t.tags_on_shopify(2) == ["VIP"]


class _NoCommits:
    async def commit(self, offsets: Any) -> None:
        raise AssertionError("not consumed from Kafka here")
