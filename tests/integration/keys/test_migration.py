"""Migration 0012 moves every existing shop's credentials into shop_credentials, unchanged."""

import asyncpg

from services.common.db import load_migrations
from services.common.shops import Kind, ShopDirectory, hash_token


async def test_existing_shops_keep_their_credentials_through_0012(
    db: asyncpg.Connection, database_url: str
) -> None:
    await db.execute("CREATE SCHEMA before_keys")
    await db.execute("SET search_path TO before_keys")
    later = []
    for migration in load_migrations():
        if migration.version < 12:
            await db.execute(migration.sql)
        else:
            later.append(migration)
    for n in (1, 2):
        await db.execute(
            "INSERT INTO shops (domain, webhook_secret, api_token_hash, flow_secret_hash)"
            " VALUES ($1, $2, $3, $4)",
            f"old-{n}.myshopify.com",
            f"webhook-secret-{n}",
            hash_token(f"sfapi_legacy-{n}"),
            hash_token(f"sfflow_legacy-{n}"),
        )
    for migration in later:
        await db.execute(migration.sql)

    columns = {
        r["column_name"]
        for r in await db.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'before_keys' AND table_name = 'shops'"
        )
    }
    assert not columns & {"webhook_secret", "api_token_hash", "flow_secret_hash"}
    rows = await db.fetch(
        "SELECT s.domain, c.kind, c.token_hash, c.webhook_secret, c.expires_at"
        " FROM shop_credentials c JOIN shops s ON s.id = c.shop_id ORDER BY s.domain, c.kind"
    )
    assert [(r["domain"], r["kind"]) for r in rows] == [
        (f"old-{n}.myshopify.com", kind) for n in (1, 2) for kind in ("admin", "flow", "webhook")
    ]
    assert all(r["expires_at"] is None for r in rows)
    assert rows[0]["token_hash"] == hash_token("sfapi_legacy-1")
    assert rows[2]["webhook_secret"] == "webhook-secret-1"

    # The legacy tokens open exactly as before (through the same lookups the apps use).
    pool = await asyncpg.create_pool(
        database_url, min_size=1, max_size=1, server_settings={"search_path": "before_keys"}
    )
    try:
        shops = ShopDirectory(pool)
        admin = await shops.by_token("sfapi_legacy-2")
        assert admin is not None and (admin.shop.domain, admin.kind) == (
            "old-2.myshopify.com",
            Kind.ADMIN,
        )
        flow = await shops.by_token("sfflow_legacy-1")
        assert flow is not None and flow.kind is Kind.FLOW
        found = await shops.webhook_secrets("old-1.myshopify.com")
        assert found is not None and found.secrets == ("webhook-secret-1",)
    finally:
        await pool.close()
