"""Webhook deliveries, as Shopify makes them: a POST of the JSON body to each subscription of
the topic, signed with the shop's secret (base64 HMAC-SHA256 of the raw body) and carrying
Shopify's headers. Deliveries run in the background, are retried a few times when the
receiver fails, and never hold up the mutation that caused them; each lands in the log."""

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from services.common.signing import sign_webhook
from services.shopify_standin.state import Shop, StandinState, iso, utc_now

logger = logging.getLogger(__name__)

# The subscription topic (GraphQL enum) and the topic name deliveries carry in X-Shopify-Topic.
TOPICS = {
    "APP_UNINSTALLED": "app/uninstalled",
    "BULK_OPERATIONS_FINISH": "bulk_operations/finish",
    "CUSTOMERS_CREATE": "customers/create",
    "CUSTOMERS_DELETE": "customers/delete",
    "CUSTOMERS_EMAIL_MARKETING_CONSENT_UPDATE": "customers_email_marketing_consent/update",
    "CUSTOMERS_UPDATE": "customers/update",
    "CUSTOMER_TAGS_ADDED": "customer.tags_added",
    "CUSTOMER_TAGS_REMOVED": "customer.tags_removed",
    "ORDERS_CREATE": "orders/create",
}


@dataclass
class Delivery:
    url: str
    body: bytes
    headers: dict[str, str]
    log: dict[str, Any]
    attempts: int = 0


@dataclass
class DeliveryPolicy:
    """How hard the stand-in tries: attempts per delivery, the first pause between them
    (doubling after each), the receiver's time to answer, and how many deliveries at once."""

    attempts: int = 3
    retry_initial_seconds: float = 0.2
    timeout_seconds: float = 5.0
    workers: int = 4


@dataclass
class WebhookDispatcher:
    state: StandinState
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    _queue: "asyncio.Queue[Delivery]" = field(default_factory=asyncio.Queue)
    _workers: list["asyncio.Task[None]"] = field(default_factory=list)
    _retries: set[asyncio.TimerHandle] = field(default_factory=set)
    _http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Start the delivery workers (the HTTP client opens with the first delivery)."""
        self._workers = [
            asyncio.create_task(self._work(), name=f"webhook-delivery-{n}")
            for n in range(self.policy.workers)
        ]

    async def stop(self, grace_seconds: float = 2.0) -> None:
        """Give queued deliveries `grace_seconds` to go out, then stop; pending retries drop."""
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        try:
            await asyncio.wait_for(self._queue.join(), grace_seconds)
        except TimeoutError:
            logger.warning("stopping with %d webhook deliveries unsent", self._queue.qsize())
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def emit(
        self, shop: Shop, topic: str, payload: dict[str, Any], event_id: str | None = None
    ) -> int:
        """Queue `payload` for every subscription of `shop` to `topic` (the GraphQL enum);
        returns how many deliveries were queued. All share one X-Shopify-Event-Id."""
        targets = [s for s in shop.subscriptions if s.topic == topic]
        if not targets:
            return 0
        event_id = event_id or str(uuid.uuid4())
        body = orjson.dumps(payload)
        signature = sign_webhook(body, shop.webhook_secret)
        triggered_at = utc_now().isoformat(timespec="microseconds").replace("+00:00", "Z")
        for subscription in targets:
            webhook_id = str(uuid.uuid4())
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Topic": TOPICS[topic],
                "X-Shopify-Hmac-Sha256": signature,
                "X-Shopify-Shop-Domain": shop.domain,
                "X-Shopify-Webhook-Id": webhook_id,
                "X-Shopify-Event-Id": event_id,
                "X-Shopify-Triggered-At": triggered_at,
                "X-Shopify-API-Version": subscription.api_version,
            }
            log: dict[str, Any] = {
                "webhook_id": webhook_id,
                "event_id": event_id,
                "shop": shop.domain,
                "topic": TOPICS[topic],
                "url": subscription.uri,
                "status": "pending",
                "attempts": 0,
                "response_status": None,
                "error": None,
                "created_at": iso(utc_now()),
                "delivered_at": None,
                "payload": payload,
            }
            self.state.delivery_log.append(log)
            self._queue.put_nowait(Delivery(subscription.uri, body, headers, log))
        return len(targets)

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._attempt(delivery)
            except Exception:  # a worker must outlive any one delivery
                logger.exception("webhook delivery failed unexpectedly")
            finally:
                self._queue.task_done()

    async def _attempt(self, delivery: Delivery) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.policy.timeout_seconds)
        delivery.attempts += 1
        delivery.log["attempts"] = delivery.attempts
        try:
            response = await self._http.post(
                delivery.url, content=delivery.body, headers=delivery.headers
            )
        except httpx.HTTPError as exc:
            delivery.log["error"] = f"{type(exc).__name__}: {exc}"
        else:
            delivery.log["response_status"] = response.status_code
            if 200 <= response.status_code < 300:
                delivery.log.update(status="delivered", error=None, delivered_at=iso(utc_now()))
                return
            delivery.log["error"] = f"HTTP {response.status_code}"
        if delivery.attempts >= self.policy.attempts:
            delivery.log["status"] = "failed"
            return
        delay = self.policy.retry_initial_seconds * 2 ** (delivery.attempts - 1)
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def requeue() -> None:
            self._retries.discard(handle)
            self._queue.put_nowait(delivery)

        handle = loop.call_later(delay, requeue)
        self._retries.add(handle)
