"""Review: the shop directory remembers lookups; a domain header that cannot name a shop
(any size the HTTP server takes: a megabyte passes) must not be sent to the database or kept."""

import asyncpg
import httpx

from services.common.settings import Settings
from services.common.shops import ShopCredentials, ShopDirectory
from services.common.signing import sign_webhook
from services.ingest.app import create_app
from tests.integration.keys.support import keyed, served

HUGE = "a" * (1024 * 1024) + ".myshopify.com"


async def test_review_shops_a_domain_that_cannot_be_a_shops_is_neither_looked_up_nor_kept(
    pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    shops = ShopDirectory(pool)
    for domain in (HUGE, "not a domain", "x" * 250 + ".myshopify.com"):
        assert await shops.webhook_secrets(domain) is None
    # Its private cache: the one place a flood of such headers would pile up.
    assert shops._cache == {}
    found = await shops.webhook_secrets(shop.domain.upper())
    assert found is not None and found.shop.id == shop.shop_id


async def test_review_shops_ingest_answers_a_huge_domain_with_the_same_401(
    settings: Settings, shop: ShopCredentials
) -> None:
    app = create_app(keyed(settings))
    body = b"{}"
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        for domain in (HUGE, shop.domain + "x"):
            headers = {
                "X-Shopify-Shop-Domain": domain,
                "X-Shopify-Hmac-Sha256": sign_webhook(body, shop.webhook_secret),
                "X-Shopify-Topic": "customers/update",
            }
            answer = await http.post("/webhooks/shopify", content=body, headers=headers)
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "unauthorized"
        kept = sum(len(key[1]) for key in app.state.shops._cache)
    assert kept < 1024
