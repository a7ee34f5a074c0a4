"""The segmenter's REST API: customers' segments and state, segments CRUD, preview, members,
and the operator's /v1/admin routes (admin.py).

Every shop route is scoped to the shop of the bearer key; another shop's data is a 404. The
segments lookup takes the read key or the admin token, every other shop route the admin token.
Shopify ids are strings in JSON (JavaScript cannot hold them); money is a decimal string.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.api.admin import admin_router
from services.api.lookup import OPENAPI as LOOKUP_OPENAPI
from services.api.lookup import (
    PATTERN,
    TEMPLATE,
    CustomerSegmentsEndpoint,
    LookupState,
    path_id,
)
from services.api.rule_metrics import RuleMetrics
from services.common import privacy
from services.common.auth import ShopDep, refusal_counter, shop_gone
from services.common.bodylimit import add_body_limit
from services.common.db import create_pool, database_ready
from services.common.envelope import PayloadError, loads_json, parse_payload_object
from services.common.errors import ApiError, bad_request, error_counter, install_error_handlers
from services.common.fastpath import FastPathApp
from services.common.jsontext import encode_json
from services.common.metrics import mount_metrics, new_registry
from services.common.ratelimit import RateLimiter
from services.common.settings import Settings
from services.common.shops import ShopDirectory
from services.segmenter.domain.rules.validate import (
    RuleError,
    RuleLimitError,
    validate_actions,
    validate_conditions,
)
from services.segmenter.domain.rules.variables import rule_data
from services.segmenter.storage import segments as segment_store
from services.segmenter.storage.backfill import BackfillOptions, BackfillResult
from services.segmenter.storage.rows import facts_from_row

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

CUSTOMER_ROW = "SELECT * FROM customers WHERE shop_id = $1 AND customer_id = $2"
SEGMENTS = """
SELECT s.*, (SELECT count(*) FROM memberships m WHERE m.segment_id = s.id) AS size
FROM segments s WHERE s.shop_id = $1 AND NOT s.deleting ORDER BY s.handle
"""
HANDLE_BEING_DELETED = (
    "SELECT deleting FROM segments WHERE shop_id = $1 AND handle = $2 AND deleting"
)
SEGMENT = """
SELECT s.*, (SELECT count(*) FROM memberships m WHERE m.segment_id = s.id) AS size
FROM segments s WHERE s.shop_id = $1 AND s.id = $2 AND NOT s.deleting
"""
# Ids as the API gives them out; `\d` would match every Unicode decimal digit (in re and pydantic).

MEMBERS = """
SELECT customer_id, since FROM memberships
WHERE shop_id = $1 AND segment_id = $2 AND customer_id > $3
ORDER BY customer_id LIMIT $4
"""


class JSONText(JSONResponse):
    """JSON with exact numbers (Decimal as a number), never through float.

    A JSONResponse so OpenAPI documents these answers as JSON, not as a string.
    """

    def render(self, content: Any) -> bytes:
        return encode_json(content)


# Shown in the OpenAPI document (and tried first by the fuzz): a rule in the stored format.
_RULE_EXAMPLE = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}
_ACTIONS_EXAMPLE = [{"name": "add_tag", "params": {"tag": "VIP"}}]
_CHANGE_EXAMPLE = {"name": "VIP", "conditions": _RULE_EXAMPLE, "actions": _ACTIONS_EXAMPLE}
_SEGMENT_EXAMPLE = {"handle": "vip", **_CHANGE_EXAMPLE}


class SegmentChange(BaseModel):
    """What PUT may change; the handle stays."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["VIP"])
    description: str = Field(default="", max_length=2000)
    conditions: dict[str, Any] = Field(examples=[_RULE_EXAMPLE])
    actions: list[dict[str, Any]] = Field(default_factory=list, examples=[_ACTIONS_EXAMPLE])


class SegmentIn(SegmentChange):
    handle: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", examples=["vip"])


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conditions: dict[str, Any] = Field(examples=[_RULE_EXAMPLE])
    sample: int = Field(default=20, ge=0, le=100)


def _body_schema(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a body read by hand (bodies skip FastAPI's parser to keep numbers exact)."""
    content = {"application/json": {"schema": model.model_json_schema(), "example": example}}
    return {"requestBody": {"required": True, "content": content}}


def _id(value: str, what: str) -> int:
    """A path id (see `lookup.path_id`); anything else is not found."""
    found = path_id(value)
    if found is None:
        raise ApiError(404, "not_found", f"no such {what}")
    return found


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        return model.model_validate(parse_payload_object(raw))
    except PayloadError as exc:
        raise ApiError(400, "invalid_json", str(exc), field="body") from exc
    except ValidationError as exc:
        raise bad_request(exc, "invalid_request") from exc


def _checked_rule(
    conditions: dict[str, Any], actions: list[dict[str, Any]], metrics: RuleMetrics
) -> None:
    try:
        validate_conditions(conditions)
        validate_actions(actions)
    except RuleLimitError as exc:
        metrics.refused.labels(reason=exc.limit).inc()
        raise ApiError(422, "rule_too_large", f"{exc.path}: {exc.message}", field=exc.path) from exc
    except RuleError as exc:
        metrics.refused.labels(reason="invalid_rule").inc()
        raise ApiError(422, "invalid_rule", f"{exc.path}: {exc.message}", field=exc.path) from exc


def _money(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def customer_json(row: asyncpg.Record) -> dict[str, Any]:
    """A customer's facts for the API: ids as strings, money as decimal strings."""
    facts = asdict(facts_from_row(row))
    body: dict[str, Any] = {key: _money(value) for key, value in facts.items()}
    body.pop("shop_id")
    body["customer_id"] = str(row["customer_id"])
    body["product_counts"] = dict(facts["product_counts"])
    body["deleted"] = row["deleted"]
    body["evaluated_at"] = row["evaluated_at"]
    body["next_eval_at"] = row["next_eval_at"]
    return body


def segment_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "handle": row["handle"],
        "name": row["name"],
        "description": row["description"],
        "conditions": loads_json(row["conditions"]),
        "actions": loads_json(row["actions"]),
        "template": row["template"],
        "version": row["version"],
        "size": row["size"],
        # `running` while its membership is still being brought in line with this version
        # (members so far are `size`); `complete` once every stored customer was evaluated.
        "backfill_status": "complete" if row["backfill_version"] is None else "running",
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def _with_backfill(row: asyncpg.Record | None, backfill: BackfillResult) -> dict[str, Any]:
    """A segment just written, with what its backfill changed (404: deleted meanwhile)."""
    if row is None:
        raise ApiError(404, "not_found", "the segment was deleted while it was backfilled")
    result = segment_json(row)
    result["backfill"] = {"entered": backfill.entered, "exited": backfill.exited}
    return result


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The segmenter REST API (`segflow api`); its pool is opened in the lifespan, closed after.

    /readyz checks its database only: the consumer's readiness is each segmenter's own
    (`segflow segmenter`'s health port).
    """
    now = clock or (lambda: datetime.now(UTC))
    registry = registry or new_registry()
    refusals = refusal_counter(registry)
    rule_metrics = RuleMetrics.create(registry)
    backfill_options = BackfillOptions(
        chunk=settings.backfill_chunk_size,
        lease_seconds=settings.backfill_lease_seconds,
        clock=now,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No route leaves session state behind (locks are transaction-scoped), so a released
        # connection skips asyncpg's session reset: one round trip fewer per request.
        pool = await create_pool(
            settings.require_database_url(),
            settings.db_pool_min,
            settings.db_pool_max,
            reset_session=False,
        )
        app.state.pool = pool
        app.state.shops = ShopDirectory(
            pool, settings.shop_cache_ttl_seconds, clock=now, refusals=refusals
        )
        lookup.state = LookupState(pool, app.state.shops, limiter)
        try:
            yield
        finally:
            await pool.close()

    lookup = CustomerSegmentsEndpoint()
    limiter = RateLimiter.from_settings(settings, registry, "api")
    app = FastPathApp(
        title="segflow segmenter API",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=JSONText,
    )
    app.state.rate_limiter = limiter
    add_body_limit(app, settings.api_max_body_bytes, registry, "api")
    # The segments lookup, most of the traffic, skips FastAPI's stack (see lookup.py).
    app.add_fast_pattern(PATTERN, TEMPLATE, lookup, LOOKUP_OPENAPI)
    install_error_handlers(app, errors=error_counter(registry))
    mount_metrics(app, registry)
    app.include_router(admin_router(settings, now, refusals))

    def pool_of(request: Request) -> asyncpg.Pool:
        # Sync on purpose: made async, the lookup served 2.5x fewer requests from 8
        # connections with the server mostly idle (bench/RESULTS.md, 2026-12-02).
        pool: asyncpg.Pool = request.app.state.pool
        return pool

    PoolDep = Annotated[asyncpg.Pool, Depends(pool_of)]

    @app.get("/healthz")
    async def healthz() -> JSONText:
        return JSONText({"status": "ok"})

    @app.get("/readyz")
    async def readyz(pool: PoolDep) -> JSONText:
        checks = {"database": await database_ready(pool)}
        ready = all(checks.values())
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONText(body, status_code=200 if ready else 503)

    @app.get("/v1/customers/{customer_id}")
    async def customer(customer_id: str, shop: ShopDep, pool: PoolDep) -> JSONText:
        """Everything rules see of a customer, as of its last evaluation."""
        row = await pool.fetchrow(CUSTOMER_ROW, shop.id, _id(customer_id, "customer"))
        if row is None:
            raise ApiError(404, "not_found", "no such customer")
        return JSONText(customer_json(row))

    exports = Counter(
        "segflow_api_data_exports",
        "Customer data exports served (customers/data_request)",
        registry=registry,
    )

    @app.get("/v1/customers/{customer_id}/export")
    async def export_customer(customer_id: str, shop: ShopDep, pool: PoolDep) -> Response:
        """Everything segflow holds about a customer, for a data request (GDPR, CCPA).

        Served to the shop's admin token; the request is logged and counted, the data never.
        """
        cid = _id(customer_id, "customer")
        at = now()
        async with pool.acquire() as conn, conn.transaction():
            data = await conn.fetchval(privacy.export_query(), shop.id, cid)
            served = await conn.execute(privacy.MARK_EXPORTED, shop.id, cid, at)
            await privacy.log_request(conn, "data_exported", shop.id, None, at)
        exports.inc()
        logger.info(
            "customer data exported",
            extra={
                "shop_id": shop.id,
                "customer_id": cid,
                "requests_served": int(served.split()[-1]),
            },
        )
        head = encode_json({"shop": shop.domain, "customer_id": str(cid), "exported_at": at})[:-1]
        # The tables' rows come as PostgreSQL wrote them (numbers exact, ids as numbers).
        return Response(head + b',"data":' + data.encode() + b"}", media_type="application/json")

    @app.get("/v1/privacy/data-requests")
    async def data_requests(
        shop: ShopDep,
        pool: PoolDep,
        pending: Annotated[bool, Query()] = True,
    ) -> JSONText:
        """The shop's customers/data_request requests (pending ones by default), oldest first."""
        rows = await pool.fetch(privacy.DATA_REQUESTS, shop.id, pending)
        return JSONText(
            {
                "data_requests": [
                    {
                        "id": str(r["id"]),
                        "customer_id": str(r["customer_id"]),
                        "shopify_request_id": (
                            str(r["shopify_request_id"])
                            if r["shopify_request_id"] is not None
                            else None
                        ),
                        "requested_at": r["requested_at"],
                        "exported_at": r["exported_at"],
                        "export": f"/v1/customers/{r['customer_id']}/export",
                    }
                    for r in rows
                ]
            }
        )

    @app.get("/v1/rules/schema")
    async def rules_schema(shop: ShopDep) -> JSONText:
        """Variables, operators per type and actions, for a rule editor (business-rules format)."""
        return JSONText(rule_data())

    @app.get("/v1/segments")
    async def list_segments(shop: ShopDep, pool: PoolDep) -> JSONText:
        rows = await pool.fetch(SEGMENTS, shop.id)
        return JSONText({"segments": [segment_json(row) for row in rows]})

    @app.post(
        "/v1/segments", status_code=201, openapi_extra=_body_schema(SegmentIn, _SEGMENT_EXAMPLE)
    )
    async def create_segment(request: Request, shop: ShopDep, pool: PoolDep) -> JSONText:
        """Create a segment; its membership is backfilled over all stored customers before
        the answer, in chunks between which the shop's events flow."""
        body: SegmentIn = await _body(request, SegmentIn)
        _checked_rule(body.conditions, body.actions, rule_metrics)
        spec = segment_store.SegmentSpec(
            body.handle, body.name, body.description, body.conditions, body.actions
        )
        # No transaction around it: the edit and each backfill chunk commit on their own.
        async with limiter.write_slot(shop.id), pool.acquire() as conn:
            try:
                created = await segment_store.create_segment(
                    conn, shop.id, spec, now(), backfill_options, settings.max_segments_per_shop
                )
            except segment_store.TooManySegmentsError as exc:
                rule_metrics.refused.labels(reason="segments").inc()
                raise ApiError(422, "too_many_segments", str(exc)) from exc
            except asyncpg.ForeignKeyViolationError as exc:
                gone = shop_gone(exc)
                if gone is None:
                    raise
                raise gone from exc
            if created is None:
                if await conn.fetchval(HANDLE_BEING_DELETED, shop.id, body.handle):
                    # Invisible in the listings already, so "exists" would puzzle the caller.
                    raise ApiError(
                        409,
                        "handle_taken",
                        f"a segment {body.handle!r} is being deleted: its handle is free once"
                        " its members' exits are written; retry shortly",
                        headers={"Retry-After": "5"},
                    )
                raise ApiError(409, "handle_taken", f"a segment {body.handle!r} exists already")
            segment_id, backfill = created
            row = await conn.fetchrow(SEGMENT, shop.id, segment_id)
        return JSONText(_with_backfill(row, backfill), status_code=201)

    @app.get("/v1/segments/{segment_id}")
    async def get_segment(segment_id: str, shop: ShopDep, pool: PoolDep) -> JSONText:
        row = await pool.fetchrow(SEGMENT, shop.id, _id(segment_id, "segment"))
        if row is None:
            raise ApiError(404, "not_found", "no such segment")
        return JSONText(segment_json(row))

    @app.put(
        "/v1/segments/{segment_id}", openapi_extra=_body_schema(SegmentChange, _CHANGE_EXAMPLE)
    )
    async def change_segment(
        segment_id: str, request: Request, shop: ShopDep, pool: PoolDep
    ) -> JSONText:
        """Change a segment's rule, name or actions: a new version, backfilled at once."""
        sid = _id(segment_id, "segment")
        body: SegmentChange = await _body(request, SegmentChange)
        _checked_rule(body.conditions, body.actions, rule_metrics)
        spec = segment_store.SegmentSpec(
            "", body.name, body.description, body.conditions, body.actions
        )
        async with limiter.write_slot(shop.id), pool.acquire() as conn:
            backfill = await segment_store.update_segment(
                conn, shop.id, sid, spec, now(), backfill_options
            )
            if backfill is None:
                raise ApiError(404, "not_found", "no such segment")
            row = await conn.fetchrow(SEGMENT, shop.id, sid)
        return JSONText(_with_backfill(row, backfill))

    @app.delete("/v1/segments/{segment_id}")
    async def delete_segment(segment_id: str, shop: ShopDep, pool: PoolDep) -> JSONText:
        """Delete a segment; every member gets an exit change."""
        async with limiter.write_slot(shop.id), pool.acquire() as conn:
            exited = await segment_store.delete_segment(
                conn, shop.id, _id(segment_id, "segment"), now(), backfill_options
            )
        if exited is None:
            raise ApiError(404, "not_found", "no such segment")
        return JSONText({"deleted": True, "exited": exited})

    @app.post(
        "/v1/segments/preview", openapi_extra=_body_schema(PreviewIn, {"conditions": _RULE_EXAMPLE})
    )
    async def preview(request: Request, shop: ShopDep, pool: PoolDep) -> JSONText:
        """How many customers an unsaved rule matches now, with a sample of them."""
        body: PreviewIn = await _body(request, PreviewIn)
        _checked_rule(body.conditions, [], rule_metrics)
        async with limiter.write_slot(shop.id), pool.acquire() as conn:
            count, sample = await segment_store.preview(
                conn, shop.id, body.conditions, now(), body.sample
            )
        return JSONText({"count": count, "sample": [str(cid) for cid in sample]})

    @app.get("/v1/segments/{segment_id}/customers")
    async def members(
        segment_id: str,
        shop: ShopDep,
        pool: PoolDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,19}$")] = None,
    ) -> JSONText:
        """The segment's customers in id order, `limit` at a time; pass `next_cursor` on."""
        sid = _id(segment_id, "segment")
        after = int(cursor or 0)
        if after > 2**63 - 1:
            raise ApiError(
                400, "invalid_request", "cursor is not one this API gave", field="cursor"
            )
        async with pool.acquire() as conn:
            if await conn.fetchval(SEGMENT, shop.id, sid) is None:
                raise ApiError(404, "not_found", "no such segment")
            rows = await conn.fetch(MEMBERS, shop.id, sid, after, limit + 1)
        page = rows[:limit]
        customers = [{"customer_id": str(r["customer_id"]), "since": r["since"]} for r in page]
        next_cursor = str(page[-1]["customer_id"]) if len(rows) > limit else None
        return JSONText({"customers": customers, "next_cursor": next_cursor})

    return app
