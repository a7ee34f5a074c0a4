"""Review: Shopify signs every shop's webhooks with the app's one secret, so a signature does
not tell shops apart. A privacy request of one shop (shop/redact above all) sent under
another shop's domain must not erase that other shop."""

import json

import asyncpg
import httpx
import pytest

from services.common.shops import create_shop
from services.common.signing import sign_webhook
from tests.integration.ingest.test_shopify_webhook import webhook_headers

APP_SECRET = "the-apps-one-client-secret"


def bodies(domain: str) -> dict[str, dict[str, object]]:
    customer = {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"}
    return {
        "shop/redact": {"shop_id": 954889, "shop_domain": domain},
        "customers/redact": {
            "shop_id": 954889,
            "shop_domain": domain,
            "customer": customer,
            "orders_to_redact": [299938],
        },
        "customers/data_request": {
            "shop_id": 954889,
            "shop_domain": domain,
            "customer": customer,
            "orders_requested": [299938],
            "data_request": {"id": 9999},
        },
    }


@pytest.mark.parametrize("topic", ["shop/redact", "customers/redact", "customers/data_request"])
async def test_review_ingest_a_privacy_request_of_one_shop_under_another_domain_is_refused(
    ingest_url: str, db: asyncpg.Connection, topic: str
) -> None:
    leaving = await create_shop(db, "leaving-shop.myshopify.com", webhook_secret=APP_SECRET)
    staying = await create_shop(db, "staying-shop.myshopify.com", webhook_secret=APP_SECRET)
    body = json.dumps(bodies(leaving.domain)[topic]).encode()
    signed = sign_webhook(body, APP_SECRET)
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as http:
        replayed = await http.post(
            "/webhooks/shopify",
            content=body,
            headers=webhook_headers(staying, body, topic, **{"X-Shopify-Hmac-Sha256": signed}),
        )
        assert replayed.status_code == 400, replayed.text
        error = replayed.json()["error"]
        assert error["code"] == "payload_does_not_fit_topic"
        assert staying.domain in error["message"]
        # Under its own shop's domain (any case), the same delivery is accepted.
        own = webhook_headers(leaving, body, topic)
        own["X-Shopify-Shop-Domain"] = leaving.domain.upper()
        accepted = await http.post("/webhooks/shopify", content=body, headers=own)
        assert accepted.status_code == 200, accepted.text
