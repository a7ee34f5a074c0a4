"""Over HTTP: rules past a limit and a shop past its segment count are a counted 422; a
segment shows whether its backfill is still running, and a deleted one is gone at once."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.api.app import create_app
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.segmenter.domain.rules.validate import MAX_CONDITIONS
from services.segmenter.storage.backfill import BackfillOptions
from services.segmenter.storage.segments import SegmentSpec, create_segment, delete_segment
from tests.helpers import start_server
from tests.integration.api.test_api import NOW, VIP, client, store_customers

DEADLINE = 10.0


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[str]:
    limited = settings.model_copy(update={"max_segments_per_shop": 2, "backfill_chunk_size": 3})
    server = make_server(create_app(limited, clock=lambda: NOW), "127.0.0.1", limited.api_port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{limited.api_port}"
    server.should_exit = True
    await task


async def refused(http: httpx.AsyncClient) -> dict[str, float]:
    text = (await http.get("/metrics")).text
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "segflow_api_rules_refused"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def condition(value: Any = 1000) -> dict[str, Any]:
    return {"name": "total_spent", "operator": "greater_than", "value": value}


async def test_a_rule_past_a_limit_is_a_counted_422_naming_the_limit(
    api: str, shop: ShopCredentials
) -> None:
    too_many = {"all": [condition()] * (MAX_CONDITIONS + 1)}
    regex = {"all": [{"name": "email", "operator": "matches_regex", "value": "[a-z]{1,255}" * 5}]}
    async with client(api, shop) as http:
        assert await refused(http) == dict.fromkeys(
            ("invalid_rule", "conditions", "depth", "text", "regex_length", "regex_program"),
            0.0,
        ) | {"segments": 0.0}
        for conditions, field in (
            (too_many, f"conditions.all[{MAX_CONDITIONS}]"),
            (regex, "conditions.all[0].value"),
        ):
            response = await http.post(
                "/v1/segments", json={"handle": "x", "name": "X", "conditions": conditions}
            )
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["code"] == "rule_too_large"
            assert error["field"] == field
        preview = await http.post("/v1/segments/preview", json={"conditions": too_many})
        assert preview.status_code == 422
        invalid = await http.post(
            "/v1/segments",
            json={"handle": "x", "name": "X", "conditions": {"all": [condition("lots")]}},
        )
        assert invalid.json()["error"]["code"] == "invalid_rule"
        counts = await refused(http)
    assert counts["conditions"] == 2
    assert counts["regex_program"] == 1
    assert counts["invalid_rule"] == 1
    assert "RE2 instructions" in (response.json()["error"]["message"])


async def test_a_shop_at_its_segment_limit_gets_a_422(api: str, shop: ShopCredentials) -> None:
    async with client(api, shop) as http:
        for handle in ("one", "two"):
            body = {"handle": handle, "name": handle, "conditions": VIP}
            assert (await http.post("/v1/segments", json=body)).status_code == 201
        third = await http.post(
            "/v1/segments", json={"handle": "three", "name": "3", "conditions": VIP}
        )
        assert third.status_code == 422, third.text
        assert third.json()["error"] == {
            "code": "too_many_segments",
            "message": "a shop has at most 2 segments",
        }
        assert (await refused(http))["segments"] == 1
        assert len((await http.get("/v1/segments")).json()["segments"]) == 2


async def test_a_running_backfill_shows_and_a_deleting_segment_is_gone(
    api: str, shop: ShopCredentials, db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await store_customers(db, shop.shop_id, dict.fromkeys(range(1, 11), "1500.00"))
    paused, go_on = asyncio.Event(), asyncio.Event()

    async def pause() -> None:
        paused.set()
        await go_on.wait()

    options = BackfillOptions(chunk=3, between_chunks=pause)
    spec = SegmentSpec("vip", "VIP", "", VIP, [])
    async with pool.acquire() as conn, client(api, shop) as http:
        running = asyncio.create_task(create_segment(conn, shop.shop_id, spec, NOW, options))
        await asyncio.wait_for(paused.wait(), DEADLINE)
        segment_id = await db.fetchval("SELECT id FROM segments")
        during = (await http.get(f"/v1/segments/{segment_id}")).json()
        assert (during["backfill_status"], during["size"]) == ("running", 3)
        go_on.set()
        await asyncio.wait_for(running, DEADLINE)
        after = (await http.get(f"/v1/segments/{segment_id}")).json()
        assert (after["backfill_status"], after["size"]) == ("complete", 10)

        paused.clear()
        go_on.clear()
        deleting = asyncio.create_task(delete_segment(conn, shop.shop_id, segment_id, NOW, options))
        await asyncio.wait_for(paused.wait(), DEADLINE)
        assert (await http.get(f"/v1/segments/{segment_id}")).status_code == 404
        assert (await http.get("/v1/segments")).json()["segments"] == []
        member = (await http.get("/v1/customers/10/segments")).json()
        assert member["segments"] == []
        go_on.set()
        assert await asyncio.wait_for(deleting, DEADLINE) == 10


WAITING_FOR_SHOP_LOCK = """
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
"""


async def test_a_create_whose_segment_is_deleted_meanwhile_is_a_404(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    await store_customers(db, shop.shop_id, dict.fromkeys(range(1, 11), "1500.00"))
    body = {"handle": "vip", "name": "VIP", "conditions": VIP}
    async with client(api, shop) as http, client(api, shop) as other:
        # The create's first chunk waits on customer 2's row lock, held here.
        holder = db.transaction()
        await holder.start()
        await db.execute("SELECT 1 FROM customers WHERE customer_id = 2 FOR UPDATE")
        creating = asyncio.create_task(http.post("/v1/segments", json=body))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while (segment_id := await db.fetchval("SELECT id FROM segments")) is None:
            assert loop.time() < deadline, "the segment was never created"
            await asyncio.sleep(0.01)
        deleting = asyncio.create_task(other.delete(f"/v1/segments/{segment_id}"))
        # The delete queues for the shop's exclusive lock behind the chunk in hand, so the
        # create's next chunk finds the segment being deleted.
        while await db.fetchval(WAITING_FOR_SHOP_LOCK) == 0:
            assert loop.time() < deadline, "the delete never waited for the shop lock"
            await asyncio.sleep(0.01)
        await holder.rollback()
        created = await asyncio.wait_for(creating, DEADLINE)
        deleted = await asyncio.wait_for(deleting, DEADLINE)
    assert created.status_code == 404, created.text
    assert created.json()["error"]["code"] == "not_found"
    assert deleted.json() == {"deleted": True, "exited": 3}
    assert await db.fetchval("SELECT count(*) FROM memberships") == 0
