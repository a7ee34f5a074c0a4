"""`segflow dev` from an empty directory: starts the embedded pair, goes ready, stops, restarts."""

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from services.common.db import load_migrations
from services.common.signing import sign_webhook
from tests.integration.dev.devstack import dev_env, processes_using, running_dev


async def test_dev_starts_from_empty_dir_goes_ready_and_reuses_its_data(
    server_tmp_path: Path,
) -> None:
    tmp_path = server_tmp_path  # its embedded PostgreSQL must stay reachable (server_directory)
    env = dev_env()
    data_dir = tmp_path / ".segflow"
    assert not data_dir.exists()

    async with running_dev(tmp_path, env) as stack:
        banner = await stack.wait_for_banner()
        assert banner["webhook secret"] == "dev-test-secret"
        assert banner["API token"].startswith("sfadmin_")
        assert banner["read key"].startswith("sfread_")
        assert banner["events key"].startswith("sfevt_")
        assert banner["operator token"].startswith("sfop_")
        assert banner["ingest"] == stack.url("ingest")
        assert banner["segmenter API"] == stack.url("api")
        assert banner["segmenter"] == stack.url("segmenter_health")
        async with httpx.AsyncClient(base_url=stack.url("ingest")) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": True, "kafka": True}
        async with httpx.AsyncClient(base_url=stack.url("api")) as client:
            api_ready = await client.get("/readyz")
            segments = await client.get(
                "/v1/segments", headers={"Authorization": f"Bearer {banner['API token']}"}
            )
            # The printed keys are the running shop's: each with its own power.
            as_reader = await client.get(
                "/v1/segments", headers={"Authorization": f"Bearer {banner['read key']}"}
            )
            shops = await client.get(
                "/v1/admin/shops", headers={"Authorization": f"Bearer {banner['operator token']}"}
            )
        assert as_reader.status_code == 403, as_reader.text
        assert [s["domain"] for s in shops.json()["shops"]] == ["demo.myshopify.com"]
        assert api_ready.status_code == 200, api_ready.text
        assert api_ready.json()["checks"] == {"database": True}
        handles = {segment["handle"] for segment in segments.json()["segments"]}
        assert {"vip", "new-customer", "churn-risk"} <= handles
        async with httpx.AsyncClient(base_url=stack.url("segmenter_health")) as client:
            segmenter_ready = await client.get("/readyz")
        assert segmenter_ready.status_code == 200, segmenter_ready.text
        assert segmenter_ready.json()["consumer"]["state"] == "running"
        await an_order_of_1500_tags_the_customer_vip_on_the_standin(stack.url("ingest"), banner)
        conn = await asyncpg.connect(banner["database"])
        try:
            await conn.execute("INSERT INTO shops (domain) VALUES ('kept.myshopify.com')")
        finally:
            await conn.close()
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert processes_using(data_dir) == []

    async with running_dev(tmp_path, env) as stack:
        banner = await stack.wait_for_banner()
        conn = await asyncpg.connect(banner["database"])
        try:
            domains = {r["domain"] for r in await conn.fetch("SELECT domain FROM shops")}
            migrations = await conn.fetchval("SELECT count(*) FROM schema_migrations")
            # Read from the stand-in when the demo shop was connected (SEGFLOW_DEMO_SHOP_TIMEZONE).
            demo_zone = await conn.fetchval(
                "SELECT iana_timezone FROM shops WHERE domain = 'demo.myshopify.com'"
            )
        finally:
            await conn.close()
        assert domains == {"demo.myshopify.com", "kept.myshopify.com"}
        assert migrations == len(load_migrations())
        assert demo_zone == "America/New_York"
    assert processes_using(data_dir) == []


async def an_order_of_1500_tags_the_customer_vip_on_the_standin(
    ingest: str, banner: dict[str, str]
) -> None:
    """Through every process: ingest, a segmenter, the tagger, the stand-in (and its echo
    webhooks back to ingest)."""
    now = datetime.now(UTC).isoformat()
    customer = {"id": 7001, "email": "ada@example.com", "created_at": now, "updated_at": now}
    order = {
        "id": 9001,
        "created_at": now,
        "updated_at": now,
        "total_price": "1500.00",
        "customer": customer,
        "line_items": [{"id": 1, "product_id": 1, "quantity": 1, "price": "1500.00"}],
    }
    body = json.dumps(order).encode()
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": banner["demo shop"],
        "X-Shopify-Hmac-Sha256": sign_webhook(body, banner["webhook secret"]),
        "X-Shopify-Event-Id": "dev-test-order",
        "X-Shopify-API-Version": "2026-01",
    }
    async with httpx.AsyncClient(base_url=ingest) as client:
        accepted = await client.post("/webhooks/shopify", content=body, headers=headers)
    assert accepted.status_code == 200, accepted.text
    shopify = banner["Shopify"]
    path = f"/_standin/shops/{banner['demo shop']}/customers/7001"
    async with httpx.AsyncClient(base_url=shopify) as client:
        async with asyncio.timeout(30):
            while True:
                found = await client.get(path)
                if found.status_code == 200 and "VIP" in found.json()["tags"]:
                    break
                await asyncio.sleep(0.1)
