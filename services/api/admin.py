"""The operator's endpoints on the API (`/v1/admin/...`, the operator token): register shops,
list them, rotate a shop's credentials. `segflow shops create|rotate|list` use the same
functions (`register_shop`, `rotate_credential`, `list_shops`).

No shop key opens these, and the operator token opens no shop's data (it is no shop key).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Request
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.auth import OperatorGuard
from services.common.envelope import PayloadError, parse_payload_object
from services.common.errors import ApiError, bad_request
from services.common.settings import Settings
from services.common.shops import (
    DEFAULT_GRACE,
    MAX_GRACE,
    Kind,
    Rotated,
    ShopCredentials,
    ShopExistsError,
    ShopInfo,
    UnknownShopError,
    create_shop,
    list_shops,
    rotate_credential,
)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Registered:
    credentials: ShopCredentials
    segments_installed: int
    journeys_installed: int


async def register_shop(
    conn: asyncpg.Connection, domain: str, now: datetime, *, webhook_secret: str | None = None
) -> Registered:
    """A new shop with one credential of each kind, the built-in segments and journeys."""
    from services.segmenter.storage.segments import install_templates
    from services.tagger.journeys_store import install_journeys

    async with conn.transaction():
        creds = await create_shop(conn, domain, webhook_secret=webhook_secret, now=now)
        segments = await install_templates(conn, creds.shop_id, now)
        journeys = await install_journeys(conn, creds.shop_id, now)
    return Registered(creds, segments, journeys)


class ShopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(min_length=1, max_length=255)
    # Shopify's app secret, which signs the webhooks; else one is generated.
    webhook_secret: str | None = Field(default=None, min_length=16, max_length=512)


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int = Field(
        default=int(DEFAULT_GRACE.total_seconds()), ge=0, le=int(MAX_GRACE.total_seconds())
    )
    # Webhook kind only: the new app secret Shopify shows; else one is generated.
    secret: str | None = Field(default=None, min_length=16, max_length=512)


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        return model.model_validate(parse_payload_object(raw) if raw.strip() else {})
    except PayloadError as exc:
        raise ApiError(400, "invalid_json", str(exc), field="body") from exc
    except ValidationError as exc:
        raise bad_request(exc, "invalid_request") from exc


def credentials_json(creds: ShopCredentials) -> dict[str, str]:
    return {
        "admin_token": creds.api_token,
        "read_key": creds.read_key,
        "events_key": creds.events_key,
        "flow_secret": creds.flow_secret,
        "webhook_secret": creds.webhook_secret,
    }


def shop_info_json(info: ShopInfo) -> dict[str, Any]:
    return {
        "id": str(info.id),
        "domain": info.domain,
        "created_at": info.created_at,
        "credentials": [
            {"kind": c.kind.value, "created_at": c.created_at, "expires_at": c.expires_at}
            for c in info.credentials
        ],
    }


def rotated_json(rotated: Rotated) -> dict[str, Any]:
    return {
        "domain": rotated.domain,
        "kind": rotated.kind.value,
        "secret": rotated.secret,
        "previous_expire_at": rotated.previous_expire_at,
    }


def admin_router(settings: Settings, now: Clock, refusals: Counter | None = None) -> APIRouter:
    """The `/v1/admin` routes, every one behind the operator token."""
    guard = OperatorGuard(settings, refusals)
    router = APIRouter(prefix="/v1/admin", dependencies=[Depends(guard)])

    def pool_of(request: Request) -> asyncpg.Pool:
        pool: asyncpg.Pool = request.app.state.pool
        return pool

    PoolDep = Annotated[asyncpg.Pool, Depends(pool_of)]

    @router.post("/shops", status_code=201)
    async def create(request: Request, pool: PoolDep) -> dict[str, Any]:
        """Register a shop; every credential is in this answer and never shown again."""
        body: ShopIn = await _body(request, ShopIn)
        try:
            async with pool.acquire() as conn:
                done = await register_shop(
                    conn, body.domain, now(), webhook_secret=body.webhook_secret
                )
        except ShopExistsError as exc:
            raise ApiError(
                409, "shop_exists", f"shop {exc} exists already", field="domain"
            ) from exc
        except ValueError as exc:
            raise ApiError(400, "invalid_request", str(exc), field="domain") from exc
        return {
            "id": str(done.credentials.shop_id),
            "domain": done.credentials.domain,
            "credentials": credentials_json(done.credentials),
            "segments_installed": done.segments_installed,
            "journeys_installed": done.journeys_installed,
        }

    @router.get("/shops")
    async def shops(pool: PoolDep) -> dict[str, Any]:
        """Every shop with its live credentials' kinds and times (never a secret)."""
        async with pool.acquire() as conn:
            found = await list_shops(conn, now=now())
        return {"shops": [shop_info_json(info) for info in found]}

    @router.post("/shops/{domain}/credentials/{kind}/rotate")
    async def rotate(domain: str, kind: str, request: Request, pool: PoolDep) -> dict[str, Any]:
        """A new current secret of one kind (shown once); the previous ones work until
        now + grace_seconds (0: stop at once)."""
        try:
            which = Kind(kind)
        except ValueError as exc:
            kinds = ", ".join(k.value for k in Kind)
            raise ApiError(404, "not_found", f"no credential kind {kind!r} ({kinds})") from exc
        body: RotateIn = await _body(request, RotateIn)
        if body.secret is not None and which is not Kind.WEBHOOK:
            raise ApiError(
                400,
                "invalid_request",
                f"a {which.value} key is generated by segflow; only a webhook secret is given",
                field="secret",
            )
        try:
            async with pool.acquire() as conn:
                rotated = await rotate_credential(
                    conn,
                    domain,
                    which,
                    grace=timedelta(seconds=body.grace_seconds),
                    secret=body.secret,
                    now=now(),
                )
        except (UnknownShopError, ValueError) as exc:
            raise ApiError(404, "not_found", f"no shop {domain}") from exc
        return rotated_json(rotated)

    return router
