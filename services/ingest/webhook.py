"""POST /webhooks/shopify as a plain ASGI endpoint: the ingest hot path.

Shopify's deliveries are most of ingest's traffic. Through FastAPI each one paid for the
middleware stack, dependency solving (with a thread hop for a sync dependency), Request and
Headers objects and response-model handling, which cost more than the HMAC, the JSON check and
the envelope together. This endpoint reads the ASGI scope and messages itself. Its statuses,
error bodies, `Retry-After` and metrics are those of the FastAPI routes (see the README).
"""

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, TypeAdapter, ValidationError
from starlette.types import Receive, Scope, Send

from services.common.envelope import EnvelopeMeta, PayloadError, parse_payload_object
from services.common.errors import ApiError, error_body
from services.common.fastpath import openapi_error, send_json
from services.common.settings import Settings
from services.common.signing import verify_webhook
from services.ingest.payload import payload_customer_id
from services.ingest.state import IngestState
from services.ingest.topic_shapes import CHECKED_TOPICS, topic_misfit

PATH = "/webhooks/shopify"
ENDPOINT = "shopify"

_AWARE = TypeAdapter(AwareDatetime)

# The headers the endpoint reads; ASGI servers hand header names over lower-cased.
_CONTENT_LENGTH = b"content-length"
_SHOP = b"x-shopify-shop-domain"
_HMAC = b"x-shopify-hmac-sha256"
_TOPIC = b"x-shopify-topic"
_WEBHOOK_ID = b"x-shopify-webhook-id"
_EVENT_ID = b"x-shopify-event-id"
_TRIGGERED_AT = b"x-shopify-triggered-at"
_API_VERSION = b"x-shopify-api-version"
_WANTED = frozenset(
    {_CONTENT_LENGTH, _SHOP, _HMAC, _TOPIC, _WEBHOOK_ID, _EVENT_ID, _TRIGGERED_AT, _API_VERSION}
)


class _Disconnected(Exception):
    """The client went away before its body arrived; nobody is left to answer."""


def wanted_headers(scope: Scope) -> dict[bytes, str]:
    """The headers this endpoint reads, first occurrence of each (as Starlette's `get`)."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in found:
            found[name] = value.decode("latin-1")
    return found


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The whole body, refusing anything over `limit` bytes before reading it all (413)."""
    too_large = ApiError(413, "body_too_large", f"body exceeds {limit} bytes")
    # ASCII only: isdigit() alone accepts "²", which int() refuses.
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


UNAUTHORIZED_MESSAGE = (
    "X-Shopify-Shop-Domain names no shop of ours or X-Shopify-Hmac-Sha256 does not match"
)
_NO_SHOP_SECRET = "segflow: no shop has this secret"


def _time_header(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        # In UTC here: a time at the very edge of the calendar (0001-01-01T00:00+14:00) has
        # no UTC form, and the envelope would fail on it after the checks.
        return _AWARE.validate_python(value.strip()).astimezone(UTC)
    except (ValidationError, OverflowError) as exc:
        message = f"header {name} is not an ISO 8601 time with a UTC offset"
        raise ApiError(400, "invalid_header", message, field=name) from exc


def _check_freshness(triggered_at: datetime, now: datetime, settings: Settings) -> None:
    """400 for a trigger time older than the window or ahead of this clock past the skew.

    The header is not signed: this stops a delivery replayed as it was captured (headers and
    all), not one whose sender rewrote the header. A retry keeps its first trigger time, and a
    refused one stays refused, so Shopify gives it up after its retries (4 hours), never loops.
    """
    max_age = settings.webhook_max_age_seconds
    if max_age and (now - triggered_at).total_seconds() > max_age:
        raise ApiError(
            400,
            "stale_webhook",
            f"X-Shopify-Triggered-At is more than {max_age} s old: a replayed delivery",
            field="X-Shopify-Triggered-At",
        )
    ahead = settings.webhook_max_future_seconds
    if (triggered_at - now).total_seconds() > ahead:
        raise ApiError(
            400,
            "webhook_from_future",
            f"X-Shopify-Triggered-At is more than {ahead} s ahead of this server's clock",
            field="X-Shopify-Triggered-At",
        )


class ShopifyWebhookEndpoint:
    """The ASGI endpoint; `state` (an IngestState) is set by the app's lifespan before serving."""

    def __init__(self) -> None:
        self.state: IngestState | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_json(
                send, 405, error_body("method_not_allowed", "Method Not Allowed"), {"Allow": "POST"}
            )
            return
        state = self.state
        if state is None:
            raise RuntimeError("the ingest lifespan has not started")
        requests = state.metrics.requests
        try:
            event_id = await self._accept(state, scope, receive)
        except ApiError as exc:
            requests.labels(ENDPOINT, exc.outcome).inc()
            await send_json(
                send, exc.status, error_body(exc.code, exc.message, exc.field), exc.headers
            )
            return
        except _Disconnected:
            return
        requests.labels(ENDPOINT, "accepted").inc()
        await send_json(send, 200, {"status": "accepted", "event_id": event_id})

    async def _accept(self, state: IngestState, scope: Scope, receive: Receive) -> str:
        """Verify, wrap and publish one delivery; the event id, or ApiError (same order of
        checks as ever: body size, shop, signature, topic, ids, time and its freshness, JSON)."""
        headers = wanted_headers(scope)
        raw = await read_body(receive, headers.get(_CONTENT_LENGTH), state.settings.max_body_bytes)
        domain = headers.get(_SHOP, "").strip().lower()
        found = await state.shops.webhook_secrets(domain) if domain else None
        # An unknown shop and a wrong signature answer alike, after HMAC work, so the answer
        # does not tell which shops exist; the metrics tell them apart. During a rotation's
        # grace an HMAC made with any live secret is accepted (each is tried, no short cut).
        secrets = found.secrets if found is not None else (_NO_SHOP_SECRET,)
        given = headers.get(_HMAC)
        signed = False
        for secret in secrets:
            signed |= verify_webhook(raw, secret, given)
        if found is None:
            raise ApiError(401, "unauthorized", UNAUTHORIZED_MESSAGE, outcome="unknown_shop")
        if not signed:
            raise ApiError(401, "unauthorized", UNAUTHORIZED_MESSAGE, outcome="invalid_signature")
        shop = found.shop
        topic = headers.get(_TOPIC, "").strip()
        if not topic:
            raise ApiError(
                400, "missing_header", "header X-Shopify-Topic is required", field="X-Shopify-Topic"
            )
        webhook_id = headers.get(_WEBHOOK_ID, "").strip() or None
        # Event-Id is shared by all deliveries of one merchant action; older deliveries may
        # lack it, and a retry keeps its webhook id, so that is the dedupe key then.
        event_id = headers.get(_EVENT_ID, "").strip() or webhook_id
        if event_id is None:
            raise ApiError(
                400,
                "missing_header",
                "header X-Shopify-Event-Id (or X-Shopify-Webhook-Id) is required",
                field="X-Shopify-Event-Id",
            )
        triggered_at = _time_header(headers.get(_TRIGGERED_AT), "X-Shopify-Triggered-At")
        received_at = datetime.now(UTC)
        if triggered_at is not None:
            _check_freshness(triggered_at, received_at, state.settings)
        try:
            customer_id = payload_customer_id(topic, raw)
        except PayloadError as exc:
            raise ApiError(400, "invalid_json", str(exc), field="body") from exc
        if topic.strip().lower() in CHECKED_TOPICS:
            misfit = topic_misfit(topic, parse_payload_object(raw), shop.domain)
            if misfit is not None:
                raise ApiError(400, "payload_does_not_fit_topic", misfit, field="body")
        meta = EnvelopeMeta(
            event_id=event_id,
            shop=shop.domain,
            topic=topic,
            source="shopify",
            customer_id=str(customer_id) if customer_id is not None else None,
            occurred_at=triggered_at or received_at,
            received_at=received_at,
            webhook_id=webhook_id,
            api_version=headers.get(_API_VERSION),
        )
        await state.publish([(meta, raw)])
        return event_id


def _header(name: str, required: bool, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "schema": {"type": "string"},
        "description": description,
    }


# The OpenAPI path item of the endpoint (FastAPI cannot see it; the app merges it in).
OPENAPI: dict[str, Any] = {
    "post": {
        "summary": "Shopify Webhook",
        "description": (
            "A Shopify webhook delivery: verified, wrapped in an envelope, acknowledged by Kafka "
            "(acks=all) before the answer. The body is any JSON object, passed on byte for byte."
        ),
        "operationId": "shopify_webhook_webhooks_shopify_post",
        "parameters": [
            _header("X-Shopify-Shop-Domain", True, "the shop; 401 unauthorized if not registered"),
            _header("X-Shopify-Hmac-Sha256", True, "base64 HMAC-SHA256 of the exact body"),
            _header("X-Shopify-Topic", True, "the event type, e.g. orders/create"),
            _header("X-Shopify-Event-Id", False, "the event id (dedupe key)"),
            _header("X-Shopify-Webhook-Id", False, "the event id when Event-Id is absent"),
            _header("X-Shopify-Triggered-At", False, "ISO 8601 with offset: occurred_at"),
            _header("X-Shopify-API-Version", False, "passed on in the envelope"),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "responses": {
            "200": {
                "description": "Acknowledged by Kafka",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string", "enum": ["accepted"]},
                                "event_id": {"type": "string"},
                            },
                        }
                    }
                },
            },
            "400": openapi_error(
                "missing_header, invalid_header, stale_webhook, webhook_from_future, "
                "invalid_json or payload_does_not_fit_topic"
            ),
            "401": openapi_error(
                "unauthorized: unknown shop or wrong signature (told apart in metrics only)"
            ),
            "413": openapi_error("body_too_large"),
            "503": {
                **openapi_error("broker_unavailable"),
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
        },
    }
}
