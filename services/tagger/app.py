"""The tagger's HTTP API (127.0.0.1:8002): health, metrics, and its state per shop.

Every /v1 route is scoped to the shop of the bearer token, the shop's admin token (another
shop's data is a 404).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from services.api.lookup import path_id
from services.common.auth import ShopDep, refusal_counter
from services.common.bodylimit import add_body_limit
from services.common.db import create_pool
from services.common.errors import ApiError, error_counter, install_error_handlers
from services.common.metrics import mount_metrics
from services.common.ratelimit import RateLimiter
from services.common.settings import Settings
from services.common.shops import ShopDirectory
from services.tagger import storage
from services.tagger.journeys_api import journeys_router
from services.tagger.service import TaggerHealth
from services.tagger.unsubscribe_api import unsubscribe_router

LEDGER_OF_CUSTOMER = """
SELECT tag, state, changed_at FROM tag_ledger
WHERE shop_id = $1 AND customer_id = $2 ORDER BY tag_key
"""
# Another shop's customer (or none at all) is a 404, not an empty list.
CUSTOMER_KNOWN = "SELECT 1 FROM customers WHERE shop_id = $1 AND customer_id = $2"


def _work(row: asyncpg.Record) -> dict[str, Any]:
    body = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(row).items()}
    body["customer_id"] = str(row["customer_id"])
    return body


def create_app(settings: Settings, health: TaggerHealth, registry: CollectorRegistry) -> FastAPI:
    """The tagger's API; its pool is opened in the lifespan."""

    # Ingest counts its refusals per endpoint (segflow_ingest_requests_total); these here.
    refusals = refusal_counter(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.require_database_url(), 1, 4)
        app.state.pool = pool
        app.state.shops = ShopDirectory(pool, settings.shop_cache_ttl_seconds, refusals=refusals)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="segflow tagger", version="0.1.0", lifespan=lifespan)
    app.state.rate_limiter = RateLimiter.from_settings(settings, registry, "tagger_api")
    add_body_limit(app, settings.api_max_body_bytes, registry, "tagger_api")
    install_error_handlers(app, errors=error_counter(registry))
    mount_metrics(app, registry)

    app.include_router(unsubscribe_router(settings))
    app.include_router(journeys_router())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = health.ready
        body = {"status": "ready" if ready else "not_ready", **health.report()}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/v1/tags/pending")
    async def pending(
        request: Request, shop: ShopDep, limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        """Customers waiting for their tags to be written (due first)."""
        rows = await request.app.state.pool.fetch(storage.PENDING, shop.id, limit)
        return {"pending": [_work(r) for r in rows]}

    @app.get("/v1/tags/parked")
    async def parked(
        request: Request, shop: ShopDep, limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        """Customers whose tag writes reached the retry bound; still retried, less often."""
        rows = await request.app.state.pool.fetch(storage.PARKED, shop.id, limit)
        return {"parked": [_work(r) for r in rows]}

    @app.get("/v1/customers/{customer_id}/tags")
    async def customer_tags(request: Request, customer_id: str, shop: ShopDep) -> dict[str, Any]:
        """The tags segflow manages for a customer, and where each stands."""
        found = path_id(customer_id)
        pool = request.app.state.pool
        if found is None or await pool.fetchval(CUSTOMER_KNOWN, shop.id, found) is None:
            raise ApiError(404, "not_found", "no such customer")
        rows = await pool.fetch(LEDGER_OF_CUSTOMER, shop.id, found)
        return {
            "customer_id": str(customer_id),
            "tags": [
                {"tag": r["tag"], "state": r["state"], "since": r["changed_at"].isoformat()}
                for r in rows
            ],
        }

    return app
