"""A full run of `segflow dev` (webhooks, tags on the stand-in, a custom event, the API, a data
export, a rejected webhook, a redaction): its logs carry ids, never a customer's email, name,
phone or address, nor any secret or token (the start banner, printed for the developer, aside).
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from services.common.signing import sign_webhook
from tests.integration.dev.devstack import dev_env, running_dev

CUSTOMER = 913357024681357977
PERSONAL = {
    "email": "Marguerite.Vasquez-Olmstead@example.com",
    "first_name": "Marguerite",
    "last_name": "Vasquez-Olmstead",
    "phone": "+14155550199",
    "address1": "1187 Hollowmere Crescent",
}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)
    assert True, what


async def post_webhook(
    client: httpx.AsyncClient, banner: dict[str, str], topic: str, payload: object, n: int
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": banner["demo shop"],
        "X-Shopify-Hmac-Sha256": sign_webhook(body, banner["webhook secret"]),
        "X-Shopify-Event-Id": f"log-test-{n}",
        "X-Shopify-Webhook-Id": f"log-test-webhook-{n}",
        "X-Shopify-API-Version": "2026-01",
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
    }
    return await client.post("/webhooks/shopify", content=body, headers=headers)


def secrets_of(banner: dict[str, str]) -> dict[str, str]:
    """Every secret the banner shows: its labels name them (secret, token, key)."""
    return {
        label: value
        for label, value in banner.items()
        if any(word in label.lower() for word in ("secret", "token", "key"))
    }


async def test_a_full_run_logs_no_personal_data_and_no_secret(server_tmp_path: Path) -> None:
    async with running_dev(server_tmp_path, dev_env()) as stack:
        banner = await stack.wait_for_banner()
        secrets = secrets_of(banner)
        assert len(secrets) >= 3, banner
        admin = {"Authorization": f"Bearer {banner['API token']}"}
        now = datetime.now(UTC).isoformat()
        customer = {
            "id": CUSTOMER,
            "email": PERSONAL["email"],
            "first_name": PERSONAL["first_name"],
            "last_name": PERSONAL["last_name"],
            "phone": PERSONAL["phone"],
            "default_address": {"address1": PERSONAL["address1"], "city": "Oakland"},
            "email_marketing_consent": {"state": "subscribed", "consent_updated_at": now},
            "created_at": now,
            "updated_at": now,
        }
        order = {
            "id": 99001,
            "created_at": now,
            "updated_at": now,
            "total_price": "1500.00",
            "email": PERSONAL["email"],
            "customer": customer,
            "billing_address": {"address1": PERSONAL["address1"], "phone": PERSONAL["phone"]},
            "line_items": [{"id": 1, "product_id": 1, "quantity": 1, "price": "1500.00"}],
        }
        async with (
            httpx.AsyncClient(base_url=stack.url("ingest")) as ingest,
            httpx.AsyncClient(base_url=stack.url("api"), headers=admin) as api,
            httpx.AsyncClient(base_url=banner["Shopify"]) as shopify,
        ):
            for n, (topic, payload) in enumerate(
                [("customers/create", customer), ("orders/create", order)]
            ):
                accepted = await post_webhook(ingest, banner, topic, payload, n)
                assert accepted.status_code == 200, accepted.text
            tags = f"/_standin/shops/{banner['demo shop']}/customers/{CUSTOMER}"

            async def tagged_vip() -> bool:
                found = await shopify.get(tags)
                return found.status_code == 200 and "VIP" in found.json()["tags"]

            await eventually(tagged_vip, "VIP on the stand-in")
            event = {
                "event_id": "log-test-view",
                "type": "page_viewed",
                "customer_id": str(CUSTOMER),
                "properties": {"email": PERSONAL["email"]},
            }
            sent = await ingest.post("/v1/events", json=event, headers=admin)
            assert sent.status_code == 202, sent.text
            # A forged delivery, with the secret itself as its "signature".
            forged = await ingest.post(
                "/webhooks/shopify",
                content=json.dumps(customer).encode(),
                headers={
                    "X-Shopify-Topic": "customers/update",
                    "X-Shopify-Shop-Domain": banner["demo shop"],
                    "X-Shopify-Hmac-Sha256": banner["webhook secret"],
                },
            )
            assert forged.status_code == 401
            assert (await api.get(f"/v1/customers/{CUSTOMER}")).status_code == 200
            exported = await api.get(f"/v1/customers/{CUSTOMER}/export")
            assert PERSONAL["email"] in exported.text
            redact = {
                "shop_id": 1,
                "shop_domain": banner["demo shop"],
                "customer": {
                    "id": CUSTOMER,
                    "email": PERSONAL["email"],
                    "phone": PERSONAL["phone"],
                },
                "orders_to_redact": [99001],
            }
            accepted = await post_webhook(ingest, banner, "customers/redact", redact, 9)
            assert accepted.status_code == 200, accepted.text

            async def erased() -> bool:
                return (await api.get(f"/v1/customers/{CUSTOMER}")).status_code == 404

            await eventually(erased, "the customer erased")
        await stack.stop()
        banner_lines = {line for line in stack.stdout().splitlines() if "  " in line[:4]}
        logs = "\n".join(
            line
            for line in (stack.stdout() + "\n" + stack.stderr()).splitlines()
            if line not in banner_lines
        )
    assert "customer erased" in logs, logs[-3000:]
    # The grep would see a secret: the banner has them all, and only it is left out.
    assert all(value in stack.stdout() for value in secrets.values())
    lowered = logs.lower()
    leaked = [name for name, value in PERSONAL.items() if value.lower() in lowered]
    leaked += [label for label, value in secrets.items() if value in logs]
    assert not leaked, leaked
