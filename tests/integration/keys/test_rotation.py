"""Rotation with a grace period: old and new keys both work during the grace, only the new one
after; a webhook HMAC made with the old secret likewise; a revoked key stops within the
cache's TTL, and a cached key in grace stops at its expiry (the entry carries it)."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from services.api.app import create_app as create_api
from services.common.settings import Settings
from services.common.shops import (
    Kind,
    ShopCredentials,
    ShopDirectory,
    end_grace,
    hash_token,
    rotate_credential,
)
from services.common.signing import sign_webhook
from services.ingest.app import create_app as create_ingest
from tests.integration.api.test_api import store_customers
from tests.integration.keys.support import OPERATOR, keyed, served


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def status(url: str, path: str, key: str) -> int:
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.get(path, headers={"Authorization": f"Bearer {key}"})
    return answer.status_code


async def until_status(url: str, path: str, key: str, wanted: int, within: float = 5.0) -> None:
    """Poll until `key` gets `wanted` on `path`; fail after `within` seconds."""
    async with asyncio.timeout(within):
        while await status(url, path, key) != wanted:
            await asyncio.sleep(0.05)


async def test_old_and_new_keys_both_work_in_the_grace_and_only_the_new_after(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    clock = Clock()
    await store_customers(db, shop.shop_id, {1: "10.00"})
    # A long cache TTL: the old keys, first looked up in their grace, stay cached, so only
    # the expiry carried by the cache entry can stop them when the grace ends.
    app = create_api(keyed(settings, shop_cache_ttl_seconds=300), clock=clock)
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    async with served(app) as url, httpx.AsyncClient(base_url=url, headers=operator) as admin:
        base = f"/v1/admin/shops/{shop.domain}/credentials"
        rotated = {}
        for kind in ("admin", "read"):
            answer = await admin.post(f"{base}/{kind}/rotate", json={"grace_seconds": 60})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["kind"] == kind
            assert datetime.fromisoformat(body["previous_expire_at"]) == clock.now + timedelta(
                seconds=60
            )
            rotated[kind] = body["secret"]
        assert rotated["admin"].startswith("sfadmin_") and rotated["read"].startswith("sfread_")

        for admin_key in (shop.api_token, rotated["admin"]):
            assert await status(url, "/v1/segments", admin_key) == 200
        for read_key in (shop.read_key, rotated["read"]):
            assert await status(url, "/v1/customers/1/segments", read_key) == 200
        # The new read key has the read key's power, not more.
        assert await status(url, "/v1/segments", rotated["read"]) == 403

        clock.now += timedelta(seconds=59)
        assert await status(url, "/v1/segments", shop.api_token) == 200
        clock.now += timedelta(seconds=2)
        assert await status(url, "/v1/segments", shop.api_token) == 401
        assert await status(url, "/v1/customers/1/segments", shop.read_key) == 401
        assert await status(url, "/v1/segments", rotated["admin"]) == 200
        assert await status(url, "/v1/customers/1/segments", rotated["read"]) == 200


async def test_a_revoked_key_stops_within_the_cache_ttl(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    app = create_api(keyed(settings, shop_cache_ttl_seconds=0.2))
    async with served(app) as url:
        assert await status(url, "/v1/segments", shop.api_token) == 200  # cached now
        rotated = await rotate_credential(db, shop.domain, Kind.ADMIN, grace=timedelta(0))
        assert await status(url, "/v1/segments", rotated.secret) == 200
        await until_status(url, "/v1/segments", shop.api_token, 401)


async def test_the_cache_bound_is_the_ttl_exactly(
    pool: asyncpg.Pool, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    """A revoked key is served from the cache until the TTL and refused from then on."""
    moment = [1000.0]
    shops = ShopDirectory(pool, ttl_seconds=10.0, monotonic=lambda: moment[0])
    assert await shops.by_token(shop.api_token) is not None
    assert await shops.webhook_secrets(shop.domain) is not None
    await rotate_credential(db, shop.domain, Kind.ADMIN, grace=timedelta(0))
    await db.execute("DELETE FROM shops WHERE id = $1", shop.shop_id)
    moment[0] += 9.9
    assert await shops.by_token(shop.api_token) is not None
    moment[0] += 0.1
    assert await shops.by_token(shop.api_token) is None
    assert await shops.webhook_secrets(shop.domain) is None


async def test_rotating_with_no_grace_ends_every_older_grace_too(
    pool: asyncpg.Pool, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    first = await rotate_credential(db, shop.domain, Kind.EVENTS, grace=timedelta(hours=1))
    second = await rotate_credential(db, shop.domain, Kind.EVENTS, grace=timedelta(0))
    fresh = ShopDirectory(pool)
    assert await fresh.by_token(shop.events_key) is None
    assert await fresh.by_token(first.secret) is None
    key = await fresh.by_token(second.secret)
    assert key is not None and (key.kind, key.expires_at) == (Kind.EVENTS, None)
    # A later, longer grace never lengthens an earlier one.
    third = await rotate_credential(db, shop.domain, Kind.EVENTS, grace=timedelta(hours=2))
    fourth = await rotate_credential(db, shop.domain, Kind.EVENTS, grace=timedelta(days=3))
    expiries = {
        r["token_hash"]: r["expires_at"]
        for r in await db.fetch(
            "SELECT token_hash, expires_at FROM shop_credentials"
            " WHERE shop_id = $1 AND kind = 'events'",
            shop.shop_id,
        )
    }
    assert expiries[hash_token(second.secret)] <= datetime.now(UTC) + timedelta(hours=2)
    assert expiries[hash_token(third.secret)] > datetime.now(UTC) + timedelta(days=2)
    assert expiries[hash_token(fourth.secret)] is None
    # Those past their grace were dropped by the next rotation.
    assert hash_token(shop.events_key) not in expiries
    assert hash_token(first.secret) not in expiries


def delivery(shop: ShopCredentials, body: bytes, secret: str, event_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "customers/update",
        "X-Shopify-Shop-Domain": shop.domain,
        "X-Shopify-Hmac-Sha256": sign_webhook(body, secret),
        "X-Shopify-Event-Id": event_id,
    }


async def test_a_webhook_signed_with_the_old_secret_is_accepted_in_the_grace_only(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    app = create_ingest(keyed(settings, shop_cache_ttl_seconds=0.2))
    body = json.dumps({"id": 5, "email": "a@example.com"}).encode()
    new_secret = "shopify-app-secret-" + "n" * 24
    async with served(app) as url, httpx.AsyncClient(base_url=url) as http:

        async def send(secret: str, event_id: str) -> int:
            answer = await http.post(
                "/webhooks/shopify", content=body, headers=delivery(shop, body, secret, event_id)
            )
            return answer.status_code

        assert await send(shop.webhook_secret, "e-0") == 200
        rotated = await rotate_credential(
            db, shop.domain, Kind.WEBHOOK, grace=timedelta(hours=1), secret=new_secret
        )
        assert rotated.secret == new_secret
        # The cached entry for the domain holds the old secret only: poll past the TTL.
        async with asyncio.timeout(5):
            while await send(new_secret, "e-1") != 200:
                await asyncio.sleep(0.05)
        assert await send(shop.webhook_secret, "e-2") == 200
        assert await send("never-a-secret-of-ours", "e-3") == 401

        await end_grace(db, shop.domain, Kind.WEBHOOK, datetime.now(UTC))
        async with asyncio.timeout(5):
            while await send(shop.webhook_secret, "e-4") != 401:
                await asyncio.sleep(0.05)
        assert await send(new_secret, "e-5") == 200
    stored = await db.fetch(
        "SELECT webhook_secret, expires_at FROM shop_credentials"
        " WHERE shop_id = $1 AND kind = 'webhook' ORDER BY id",
        shop.shop_id,
    )
    assert [r["webhook_secret"] for r in stored] == [shop.webhook_secret, new_secret]
    assert stored[0]["expires_at"] <= datetime.now(UTC) and stored[1]["expires_at"] is None
