"""GET /v1/customers/{customer_id}/segments as a plain ASGI endpoint: the API's hot path.

Developers call it per page view or per checkout, so it is most of the API's traffic. Through
FastAPI each call paid for the middleware stack, routing, dependency solving and a Request
object, more than its one query. This endpoint reads the ASGI scope itself; its statuses and
error bodies are those of the FastAPI routes (401 with WWW-Authenticate, 404 not_found, 405).
"""

import re
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.types import Receive, Scope, Send

from services.common.auth import READERS, authenticate_key, bearer_token
from services.common.errors import ApiError, error_body
from services.common.fastpath import openapi_error, send_json
from services.common.ratelimit import RateLimiter
from services.common.shops import ShopDirectory

PATTERN = re.compile(r"/v1/customers/([^/]+)/segments")
TEMPLATE = "/v1/customers/{customer_id}/segments"

# One round trip: a known customer gives at least one row (NULLs when in no segment), an
# unknown one none. A deleted segment whose exits are still being written is not shown.
CUSTOMER_SEGMENTS = """
SELECT s.id, s.handle, s.name, m.since
FROM customers c
LEFT JOIN (memberships m JOIN segments s ON s.id = m.segment_id AND NOT s.deleting)
  ON m.shop_id = c.shop_id AND m.customer_id = c.customer_id
WHERE c.shop_id = $1 AND c.customer_id = $2
ORDER BY s.handle
"""

_ASCII_ID = re.compile(r"[0-9]{1,19}")
_NOT_FOUND = error_body("not_found", "no such customer")


def path_id(value: str) -> int | None:
    """A Shopify or segment id from a path: decimal ASCII digits within bigint, else None.

    ASCII only: str.isdigit() also accepts "²" (int() fails on it) and "١" or "１" (int()
    reads them as 1, another customer's id).
    """
    if not _ASCII_ID.fullmatch(value) or int(value) > 2**63 - 1:
        return None
    return int(value)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bearer_token(value.decode("latin-1"))
    return None


@dataclass
class LookupState:
    """What the endpoint needs from the app's lifespan."""

    pool: asyncpg.Pool
    shops: ShopDirectory
    limiter: RateLimiter | None = None


class CustomerSegmentsEndpoint:
    """The ASGI endpoint; `state` is set by the app's lifespan before serving."""

    def __init__(self) -> None:
        self.state: LookupState | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            body = error_body("method_not_allowed", "Method Not Allowed")
            await send_json(send, 405, body, {"Allow": "GET"})
            return
        state = self.state
        if state is None:
            raise RuntimeError("the API lifespan has not started")
        try:
            # The read key or the admin token (auth.READERS); the shared check answers 401/403.
            key = await authenticate_key(state.shops, _bearer(scope), READERS)
        except ApiError as exc:
            await send_json(send, exc.status, error_body(exc.code, exc.message), exc.headers)
            return
        shop = key.shop
        limiter = state.limiter
        # The read key's own bucket: a storefront's flood leaves the admin token's reads alone.
        refusal = limiter.refusal(shop.id, "GET", key.kind.value) if limiter is not None else None
        if refusal is not None:
            body = error_body(refusal.code, refusal.message)
            await send_json(send, refusal.status, body, refusal.headers)
            return
        match = PATTERN.fullmatch(scope["path"])
        raw_id = match.group(1) if match else ""
        customer_id = path_id(raw_id)
        rows = (
            await state.pool.fetch(CUSTOMER_SEGMENTS, shop.id, customer_id)
            if customer_id is not None
            else []
        )
        if not rows:
            await send_json(send, 404, _NOT_FOUND)
            return
        segments = [
            {"id": str(r["id"]), "handle": r["handle"], "name": r["name"], "since": r["since"]}
            for r in rows
            if r["id"] is not None
        ]
        await send_json(send, 200, {"customer_id": raw_id, "segments": segments})


OPENAPI: dict[str, Any] = {
    "get": {
        "summary": "Customer Segments",
        "description": (
            "The segments a customer is in now, each with the time it entered (`since`)."
        ),
        "operationId": "customer_segments_v1_customers__customer_id__segments_get",
        "parameters": [
            {
                "name": "customer_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "title": "Customer Id"},
                "description": "the Shopify customer id (decimal digits)",
            }
        ],
        "responses": {
            "200": {
                "description": "The customer's segments",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "customer_id": {"type": "string"},
                                "segments": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "id": {"type": "string"},
                                            "handle": {"type": "string"},
                                            "name": {"type": "string"},
                                            "since": {"type": "string", "format": "date-time"},
                                        },
                                    },
                                },
                            },
                        }
                    }
                },
            },
            "401": openapi_error("unauthorized"),
            "403": openapi_error("forbidden: an events or Flow key (needs read or admin)"),
            "404": openapi_error("not_found: no such customer in this shop"),
            "429": {
                **openapi_error("rate_limited: this shop's read requests exceed its rate"),
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
        },
    }
}
