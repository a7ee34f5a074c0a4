"""Migrations and shops against a real PostgreSQL."""

import asyncpg
import pytest

from services.common.db import create_pool, load_migrations, migrate
from services.common.shops import ShopDirectory, ShopExistsError, create_shop, hash_token


async def test_migrations_apply_once_and_are_recorded(db: asyncpg.Connection) -> None:
    # The test database is a copy of a migrated template: everything is recorded already.
    assert await migrate(db) == []
    recorded = [r["version"] for r in await db.fetch("SELECT version FROM schema_migrations")]
    assert sorted(recorded) == [m.version for m in load_migrations()]


async def test_migrations_on_an_empty_schema_apply_in_order(db: asyncpg.Connection) -> None:
    await db.execute("CREATE SCHEMA fresh")
    await db.execute("SET search_path TO fresh")
    applied = await migrate(db)
    assert applied == [m.version for m in load_migrations()]
    assert await db.fetchval("SELECT to_regclass('fresh.shops') IS NOT NULL")
    assert await migrate(db) == []


async def test_shop_credentials_are_stored_hashed_and_found_by_each(
    db: asyncpg.Connection, database_url: str
) -> None:
    creds = await create_shop(db, "Mixed-Case.myshopify.com")
    assert creds.domain == "mixed-case.myshopify.com"
    row = await db.fetchrow("SELECT * FROM shops WHERE domain = $1", creds.domain)
    assert row["api_token_hash"] == hash_token(creds.api_token)
    assert creds.api_token.encode() not in bytes(row["api_token_hash"])
    assert creds.webhook_secret not in repr(creds)

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        shops = ShopDirectory(pool)
        by_domain = await shops.by_domain("MIXED-CASE.myshopify.com")
        assert by_domain is not None and by_domain.id == creds.shop_id
        by_token = await shops.by_api_token(creds.api_token)
        assert by_token is not None and by_token.id == creds.shop_id
        by_flow = await shops.by_flow_secret(creds.flow_secret)
        assert by_flow is not None and by_flow.id == creds.shop_id
        assert await shops.by_api_token(creds.flow_secret) is None
        assert await shops.by_domain("nobody.myshopify.com") is None
    finally:
        await pool.close()


async def test_adding_a_shop_twice_needs_rotate(db: asyncpg.Connection) -> None:
    first = await create_shop(db, "twice.myshopify.com")
    with pytest.raises(ShopExistsError):
        await create_shop(db, "twice.myshopify.com")
    rotated = await create_shop(db, "twice.myshopify.com", replace=True)
    assert rotated.shop_id == first.shop_id
    assert rotated.api_token != first.api_token
    stored = await db.fetchval("SELECT api_token_hash FROM shops WHERE id = $1", first.shop_id)
    assert stored == hash_token(rotated.api_token)


@pytest.mark.parametrize("domain", ["", "no spaces.myshopify.com", "nodot", "-x.myshopify.com"])
async def test_bad_domains_are_refused(db: asyncpg.Connection, domain: str) -> None:
    with pytest.raises(ValueError, match="not a shop domain"):
        await create_shop(db, domain)


@pytest.mark.parametrize("reset_session", [True, False])
async def test_pool_release_with_and_without_the_session_reset(
    database_url: str, reset_session: bool
) -> None:
    pool = await create_pool(database_url, 1, 1, statement_timeout=7, reset_session=reset_session)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'left-behind'")
            async with conn.transaction():
                await conn.execute("SELECT 1")
        async with pool.acquire() as conn:
            name = await conn.fetchval("SHOW application_name")
            # The connection-level timeout survives either way (it is the session default).
            assert await conn.fetchval("SHOW statement_timeout") == "7s"
            assert not conn.is_in_transaction()
    finally:
        await pool.close()
    # Without the reset, session state a user set stays: only for pools that set none.
    assert (name != "left-behind") if reset_session else (name == "left-behind")
