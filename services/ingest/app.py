"""The ingest service: Shopify webhooks, Flow requests and custom events → Kafka segflow.events."""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.common.auth import (
    EVENT_SENDERS,
    FLOW_ONLY,
    authenticate,
    bearer_shop,
    unauthorized,
)
from services.common.db import create_pool, database_ready
from services.common.envelope import EnvelopeMeta, PayloadError, parse_payload_object
from services.common.errors import ApiError, bad_request, install_error_handlers
from services.common.fastpath import FastPathApp, body_schema
from services.common.kafka import broker_ready, make_producer, wait_for_broker
from services.common.metrics import mount_metrics, new_registry
from services.common.ratelimit import EVENTS, RateLimiter
from services.common.settings import Settings
from services.common.shops import Shop, ShopDirectory
from services.ingest import webhook
from services.ingest.metrics import IngestMetrics
from services.ingest.models import CustomEvent, CustomEventBatch, FlowEvent
from services.ingest.publisher import EventPublisher
from services.ingest.state import IngestState

logger = logging.getLogger(__name__)


def get_state(request: Request) -> IngestState:
    state: IngestState = request.app.state.ingest
    return state


StateDep = Annotated[IngestState, Depends(get_state)]


@contextmanager
def counted(state: IngestState, endpoint: str) -> Iterator[None]:
    """Count the request's outcome: `accepted`, or the error code it was rejected with."""
    try:
        yield
    except ApiError as exc:
        state.metrics.requests.labels(endpoint, exc.outcome).inc()
        raise
    state.metrics.requests.labels(endpoint, "accepted").inc()


def events_sender(endpoint: str) -> Callable[[Request], Awaitable[Shop]]:
    """The events key's (or admin token's) dependency; its refusals are counted like others."""

    async def dependency(request: Request) -> Shop:
        state: IngestState = request.app.state.ingest
        try:
            return await bearer_shop(request, EVENT_SENDERS)
        except ApiError as exc:
            state.metrics.requests.labels(endpoint, exc.outcome).inc()
            raise

    return dependency


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, "body_too_large", f"body exceeds {limit} bytes")
    # ASCII only: isdigit() alone accepts "²", which int() refuses.
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        return parse_payload_object(raw)
    except PayloadError as exc:
        raise ApiError(400, "invalid_json", str(exc), field="body") from exc


_EVENT_EXAMPLE = {
    "event_id": "pv-0001",
    "type": "product_viewed",
    "customer_id": "115310627314723954",
    "properties": {"product_id": 632910392},
}
_FLOW_EXAMPLE = {"event_id": "order-1-vip", "event": "vip_candidate", "customer_id": "1"}


def create_app(settings: Settings) -> FastAPI:
    """The ingest ASGI app; it opens its pool and producer in the lifespan and closes them after."""

    registry = new_registry()
    metrics = IngestMetrics.create(registry)
    shopify_webhook = webhook.ShopifyWebhookEndpoint()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bootstrap = settings.require_kafka()
        await wait_for_broker(bootstrap)
        pool = await create_pool(
            settings.require_database_url(), settings.db_pool_min, settings.db_pool_max
        )
        # The producer gives up on a message shortly before ingest answers 503, so a 503
        # normally means "not written" and Shopify's retry does not create a duplicate.
        timeout_ms = int(settings.produce_timeout_seconds * 1000)
        producer = make_producer(bootstrap, request_timeout_ms=max(500, timeout_ms * 4 // 5))
        try:
            await producer.start()
            publisher = EventPublisher(
                producer, settings.topic_events, settings.produce_timeout_seconds, metrics
            )
            shops = ShopDirectory(pool, settings.shop_cache_ttl_seconds)
            app.state.shops = shops
            state = IngestState(settings, pool, producer, shops, publisher, metrics)
            app.state.ingest = shopify_webhook.state = state
            yield
        finally:
            shopify_webhook.state = None
            # Requests in flight were finished by uvicorn before the lifespan ends.
            await producer.stop()
            await pool.close()

    app = FastPathApp(title="segflow ingest", version="0.1.0", lifespan=lifespan)
    # The bearer-token endpoints (custom events) only; Shopify's webhooks and Flow's requests
    # are never limited: a refusal only makes Shopify send them again.
    app.state.rate_limiter = RateLimiter.from_settings(
        settings, registry, "ingest", fixed_class=EVENTS
    )
    # Shopify's deliveries, the bulk of the traffic, skip FastAPI's stack (see webhook.py).
    app.add_fast_path(webhook.PATH, shopify_webhook, webhook.OPENAPI)
    install_error_handlers(app)
    mount_metrics(app, registry)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(state: StateDep) -> JSONResponse:
        checks = {
            "database": await database_ready(state.pool),
            "kafka": await broker_ready(state.producer),
        }
        ready = all(checks.values())
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.post("/webhooks/flow", openapi_extra=body_schema(FlowEvent, _FLOW_EXAMPLE))
    async def flow_request(request: Request, state: StateDep) -> dict[str, str]:
        """A Shopify Flow "Send HTTP request" action, authenticated by the shop's Flow secret."""
        with counted(state, "flow"):
            secret = request.headers.get("x-segflow-flow-secret", "").strip()
            missing = unauthorized("X-Segflow-Flow-Secret names no known shop", bearer=False)
            shop = await authenticate(state.shops, secret, FLOW_ONLY, missing=missing)
            raw = await read_body(request, settings.max_body_bytes)
            try:
                event = FlowEvent.model_validate(parse_json_object(raw))
            except ValidationError as exc:
                raise bad_request(exc, "invalid_event") from exc
            received_at = datetime.now(UTC)
            meta = EnvelopeMeta(
                event_id=event.event_id,
                shop=shop.domain,
                topic=f"flow/{event.event}",
                source="flow",
                customer_id=event.customer_id,
                occurred_at=event.occurred_at or received_at,
                received_at=received_at,
            )
            await state.publish([(meta, event.model_dump_json().encode())])
        return {"status": "accepted", "event_id": event.event_id}

    @app.post("/v1/events", status_code=202, openapi_extra=body_schema(CustomEvent, _EVENT_EXAMPLE))
    async def custom_event(
        request: Request, state: StateDep, shop: Annotated[Shop, Depends(events_sender("events"))]
    ) -> dict[str, Any]:
        """One behavioural event from the storefront or the email tool (the events key)."""
        with counted(state, "events"):
            raw = await read_body(request, settings.max_body_bytes)
            try:
                event = CustomEvent.model_validate(parse_json_object(raw))
            except ValidationError as exc:
                raise bad_request(exc, "invalid_event") from exc
            await state.publish([custom_envelope(shop, event)])
        return {"status": "accepted", "accepted": 1, "event_ids": [event.event_id]}

    @app.post(
        "/v1/events/batch",
        status_code=202,
        openapi_extra=body_schema(CustomEventBatch, {"events": [_EVENT_EXAMPLE]}),
    )
    async def custom_event_batch(
        request: Request,
        state: StateDep,
        shop: Annotated[Shop, Depends(events_sender("events_batch"))],
    ) -> dict[str, Any]:
        """Up to `max_batch_events` events; all are checked before any is accepted."""
        with counted(state, "events_batch"):
            raw = await read_body(request, settings.max_body_bytes)
            body = parse_json_object(raw)
            events = body.get("events")
            if isinstance(events, list) and len(events) > settings.max_batch_events:
                raise ApiError(
                    400,
                    "batch_too_large",
                    f"at most {settings.max_batch_events} events per call",
                    field="events",
                )
            try:
                batch = CustomEventBatch.model_validate(body)
            except ValidationError as exc:
                raise bad_request(exc, "invalid_event") from exc
            await state.publish([custom_envelope(shop, event) for event in batch.events])
        ids = [event.event_id for event in batch.events]
        return {"status": "accepted", "accepted": len(ids), "event_ids": ids}

    return app


def custom_envelope(shop: Shop, event: CustomEvent) -> tuple[EnvelopeMeta, bytes]:
    """The envelope and payload JSON for one custom event."""
    received_at = datetime.now(UTC)
    meta = EnvelopeMeta(
        event_id=event.event_id,
        shop=shop.domain,
        topic=f"custom/{event.type.value}",
        source="custom",
        customer_id=event.customer_id,
        occurred_at=event.occurred_at or received_at,
        received_at=received_at,
    )
    return meta, event.model_dump_json().encode()
