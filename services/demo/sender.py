"""Post the demo stream to a running ingest, signed and headed the way Shopify delivers."""

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

import httpx

from services.common.signing import sign_webhook
from services.demo.stream import DemoWebhook

WEBHOOK_PATH = "/webhooks/shopify"
MAX_ATTEMPTS = 5
BACKOFF_SECONDS = 0.25
# A huge or broken Retry-After must not stall the demo.
MAX_RETRY_AFTER_SECONDS = 30.0
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class DemoReport:
    """Outcome per webhook: sent, accepted (2xx), rejected (final status → count), failed."""

    sent: int
    accepted: int
    rejected: Mapping[int, int]
    failed: int


async def send_demo(
    base_url: str,
    shop_domain: str,
    webhook_secret: str,
    webhooks: Sequence[DemoWebhook],
    *,
    client: httpx.AsyncClient | None = None,
    max_attempts: int = MAX_ATTEMPTS,
) -> DemoReport:
    """POST each webhook, in order, to `{base_url}/webhooks/shopify`; retry 503s and lost
    connections up to `max_attempts` tries per webhook."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if client is not None:
        return await _send_all(
            client, base_url, shop_domain, webhook_secret, webhooks, max_attempts
        )
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as own_client:
        return await _send_all(
            own_client, base_url, shop_domain, webhook_secret, webhooks, max_attempts
        )


async def _send_all(
    client: httpx.AsyncClient,
    base_url: str,
    shop_domain: str,
    webhook_secret: str,
    webhooks: Sequence[DemoWebhook],
    max_attempts: int,
) -> DemoReport:
    url = base_url.rstrip("/") + WEBHOOK_PATH
    accepted = failed = 0
    rejected: Counter[int] = Counter()
    for webhook in webhooks:
        headers = shopify_headers(webhook, shop_domain, webhook_secret)
        status = await _deliver(client, url, headers, webhook.body, max_attempts)
        if status is None:
            failed += 1
        elif 200 <= status < 300:
            accepted += 1
        else:
            rejected[status] += 1
    return DemoReport(
        sent=len(webhooks),
        accepted=accepted,
        rejected=MappingProxyType(dict(sorted(rejected.items()))),
        failed=failed,
    )


def shopify_headers(webhook: DemoWebhook, shop_domain: str, webhook_secret: str) -> dict[str, str]:
    """The request headers Shopify sends with this webhook, HMAC included."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "Shopify-Captain-Hook",
        "X-Shopify-Topic": webhook.topic,
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-Hmac-Sha256": sign_webhook(webhook.body, webhook_secret),
        "X-Shopify-Webhook-Id": webhook.webhook_id,
        "X-Shopify-Event-Id": webhook.event_id,
        "X-Shopify-Triggered-At": _iso_utc(webhook.triggered_at),
        "X-Shopify-API-Version": webhook.api_version,
    }


async def _deliver(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], body: bytes, max_attempts: int
) -> int | None:
    """Final HTTP status of one webhook, or None when the ingest could not be reached."""
    for attempt in range(max_attempts):
        final = attempt + 1 == max_attempts
        try:
            response = await client.post(url, content=body, headers=headers)
        except httpx.TransportError:
            if final:
                return None
            delay = _backoff(attempt)
        else:
            if response.status_code != 503 or final:
                return response.status_code
            delay = _retry_after(response.headers.get("Retry-After"), attempt)
        await asyncio.sleep(delay)
    return None


def _retry_after(value: str | None, attempt: int) -> float:
    # Only the delta-seconds form is honoured; an HTTP-date falls back to the backoff.
    if value is not None and value.strip().isascii() and value.strip().isdigit():
        return min(float(value.strip()), MAX_RETRY_AFTER_SECONDS)
    return _backoff(attempt)


def _backoff(attempt: int) -> float:
    return BACKOFF_SECONDS * 2.0**attempt


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
