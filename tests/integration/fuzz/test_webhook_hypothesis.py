"""Random bodies and headers at POST /webhooks/shopify, unsigned and signed with the shop's
secret, over real HTTP into the real broker: only documented answers, each with its JSON error
body, and ingest healthy after. Derandomized and bounded."""

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from services.common.shops import ShopCredentials
from services.common.signing import sign_webhook

SETTINGS = hypothesis_settings(
    max_examples=80,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
# What an unsigned or a signed request may be told (README, "Ingest: what it guarantees").
UNSIGNED_CODES = {"unauthorized", "body_too_large"}
SIGNED_CODES = {
    "missing_header",
    "invalid_header",
    "stale_webhook",
    "webhook_from_future",
    "invalid_json",
    "payload_does_not_fit_topic",
}
NAMES = [
    "X-Shopify-Topic",
    "X-Shopify-Hmac-Sha256",
    "X-Shopify-Shop-Domain",
    "X-Shopify-Webhook-Id",
    "X-Shopify-Event-Id",
    "X-Shopify-Triggered-At",
    "X-Shopify-API-Version",
    "Content-Type",
    "Content-Encoding",
    "X-Forwarded-For",
]
# Header values h11 sends: visible ASCII, inner spaces, no surrounding whitespace.
VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
BODY = (
    st.binary(max_size=2048)
    | JSON.map(lambda value: json.dumps(value).encode())
    | st.dictionaries(st.sampled_from(["id", "email", "customer", "phone"]), JSON).map(
        lambda value: json.dumps(value).encode()
    )
)
TOPIC = st.sampled_from(
    ["orders/create", "customers/update", "customers/delete", "customers/redact", "shop/redact"]
) | VALUE.filter(bool)


def _time(offset_hours: float) -> str:
    moment = datetime.now(UTC) + timedelta(hours=offset_hours)
    return moment.isoformat().replace("+00:00", "Z")


# Near now (fresh, stale, ahead), anywhere in the calendar at the widest offsets, or garbage.
EDGES = st.datetimes(
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=14))])
).map(datetime.isoformat)
TRIGGERED = st.none() | VALUE | st.floats(-72, 2).map(_time) | EDGES


def _error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json", response.text
    code: str = response.json()["error"]["code"]
    assert response.json()["error"]["message"]
    return code


def fuzz_unsigned(url: str, shop: ShopCredentials) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:

        @SETTINGS
        @given(
            headers=st.dictionaries(st.sampled_from(NAMES), VALUE, max_size=len(NAMES)),
            body=BODY,
            own_domain=st.booleans(),
        )
        def run(headers: dict[str, str], body: bytes, own_domain: bool) -> None:
            if own_domain:
                headers["X-Shopify-Shop-Domain"] = shop.domain
            response = client.post("/webhooks/shopify", content=body, headers=headers)
            assert response.status_code in (401, 413), response.text
            assert _error_code(response) in UNSIGNED_CODES

        run()


def fuzz_signed(url: str, shop: ShopCredentials) -> dict[int, int]:
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=url, timeout=10) as client:

        @SETTINGS
        @given(
            body=BODY,
            topic=st.none() | TOPIC,
            event_id=st.none() | VALUE,
            webhook_id=st.none() | VALUE,
            triggered=TRIGGERED,
            extra=st.dictionaries(st.sampled_from(NAMES[6:]), VALUE, max_size=3),
        )
        def run(
            body: bytes,
            topic: str | None,
            event_id: str | None,
            webhook_id: str | None,
            triggered: str | None,
            extra: dict[str, str],
        ) -> None:
            headers = {
                **extra,
                "X-Shopify-Shop-Domain": shop.domain,
                "X-Shopify-Hmac-Sha256": sign_webhook(body, shop.webhook_secret),
            }
            given_headers: dict[str, Any] = {
                "X-Shopify-Topic": topic,
                "X-Shopify-Event-Id": event_id,
                "X-Shopify-Webhook-Id": webhook_id,
                "X-Shopify-Triggered-At": triggered,
            }
            headers.update({k: v for k, v in given_headers.items() if v is not None})
            response = client.post("/webhooks/shopify", content=body, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                assert response.json()["status"] == "accepted"
                return
            assert response.status_code == 400, response.text
            assert _error_code(response) in SIGNED_CODES

        run()
    return statuses


async def test_random_unsigned_deliveries_are_refused_with_401(
    ingest_url: str, shop: ShopCredentials
) -> None:
    await asyncio.to_thread(fuzz_unsigned, ingest_url, shop)
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_random_signed_deliveries_get_documented_answers_only(
    ingest_url: str, shop: ShopCredentials
) -> None:
    statuses = await asyncio.to_thread(fuzz_signed, ingest_url, shop)
    # Both sides were reached: some deliveries published, some refused.
    assert statuses.get(200, 0) >= 1 and statuses.get(400, 0) >= 1, statuses
    async with httpx.AsyncClient(base_url=ingest_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200
