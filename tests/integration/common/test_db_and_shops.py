"""Migrations and shops against a real PostgreSQL."""

import asyncpg
import pytest

from services.common.db import create_pool, load_migrations, migrate
from services.common.shops import Kind, ShopDirectory, ShopExistsError, create_shop, hash_token


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
    rows = await db.fetch(
        "SELECT kind, token_hash, webhook_secret, expires_at FROM shop_credentials"
        " WHERE shop_id = $1",
        creds.shop_id,
    )
    stored = {r["kind"]: r for r in rows}
    assert set(stored) == {k.value for k in Kind}
    for kind in (Kind.ADMIN, Kind.READ, Kind.EVENTS, Kind.FLOW):
        assert stored[kind.value]["token_hash"] == hash_token(creds.of(kind))
        assert stored[kind.value]["webhook_secret"] is None
        assert stored[kind.value]["expires_at"] is None
    assert stored["webhook"]["webhook_secret"] == creds.webhook_secret
    assert creds.webhook_secret not in repr(creds)
    assert creds.read_key.startswith("sfread_") and creds.events_key.startswith("sfevt_")
    assert creds.api_token.startswith("sfadmin_") and creds.flow_secret.startswith("sfflow_")

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        shops = ShopDirectory(pool)
        found = await shops.webhook_secrets("MIXED-CASE.myshopify.com")
        assert found is not None and found.shop.id == creds.shop_id
        assert found.secrets == (creds.webhook_secret,)
        assert creds.webhook_secret not in repr(found)
        for kind in (Kind.ADMIN, Kind.READ, Kind.EVENTS, Kind.FLOW):
            key = await shops.by_token(creds.of(kind))
            assert key is not None and (key.shop.id, key.kind) == (creds.shop_id, kind)
        # The webhook secret is no bearer key; an unknown token is nobody's.
        assert await shops.by_token(creds.webhook_secret) is None
        assert await shops.by_token("sfadmin_" + "x" * 43) is None
        assert await shops.webhook_secrets("nobody.myshopify.com") is None
    finally:
        await pool.close()


async def test_adding_a_shop_twice_needs_replace(db: asyncpg.Connection) -> None:
    first = await create_shop(db, "twice.myshopify.com")
    with pytest.raises(ShopExistsError):
        await create_shop(db, "twice.myshopify.com")
    replaced = await create_shop(db, "twice.myshopify.com", replace=True)
    assert replaced.shop_id == first.shop_id
    assert replaced.api_token != first.api_token
    hashes = await db.fetch(
        "SELECT token_hash FROM shop_credentials WHERE shop_id = $1 AND kind = 'admin'",
        first.shop_id,
    )
    # Replacing keeps nothing of the old ones (no grace: that is what rotation is for).
    assert [r["token_hash"] for r in hashes] == [hash_token(replaced.api_token)]


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
