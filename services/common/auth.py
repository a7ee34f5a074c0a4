"""Authentication: a shop's keys by power (bearer tokens, the Flow secret) and the operator's.

A key segflow does not know, or none, is the uniform 401 `unauthorized`. A valid key of its
shop without the power an endpoint needs is a 403 `forbidden` naming the kinds that would do
(the caller holds a key of that shop already, so this tells it nothing new).
"""

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter

from services.common.errors import ApiError
from services.common.ratelimit import enforce_rate_limit
from services.common.settings import Settings
from services.common.shops import Kind, Shop, ShopDirectory, ShopKey

ADMIN_ONLY = frozenset({Kind.ADMIN})
# The segments lookup: the read key, which may sit on a storefront or a developer's backend.
READERS = frozenset({Kind.ADMIN, Kind.READ})
# POST /v1/events(/batch): the write-only events key, which may sit in a storefront page.
EVENT_SENDERS = frozenset({Kind.ADMIN, Kind.EVENTS})
FLOW_ONLY = frozenset({Kind.FLOW})

BEARER_MESSAGE = "a valid `Authorization: Bearer <key>` header is required"
_BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# Kinds in the order people read them in a 403.
_ORDER = (Kind.ADMIN, Kind.READ, Kind.EVENTS, Kind.FLOW, Kind.WEBHOOK)


def refusal_counter(registry: CollectorRegistry) -> Counter:
    """`segflow_auth_refusals_total{outcome}`: requests refused for their key."""
    return Counter(
        "segflow_auth_refusals",
        "Requests refused for their key: unauthorized (none, unknown or expired), "
        "forbidden_<kind presented>, operator_unauthorized, operator_disabled",
        ["outcome"],
        registry=registry,
    )


def unauthorized(message: str = BEARER_MESSAGE, *, bearer: bool = True) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_BEARER_CHALLENGE if bearer else None)


def shop_gone(exc: Exception) -> ApiError | None:
    """The 401 for a write that found no shop to insert under (its key, looked up before the
    shop's erasure, is still cached: SEGFLOW_SHOP_CACHE_TTL_SECONDS); None for other errors."""
    constraint = getattr(exc, "constraint_name", None) or ""
    return unauthorized() if constraint.endswith("_shop_id_fkey") else None


def forbidden(allowed: frozenset[Kind], presented: Kind) -> ApiError:
    """The 403 for a valid key of too little power, naming what the endpoint needs."""
    needed = ", ".join(kind.value for kind in _ORDER if kind in allowed)
    return ApiError(
        403,
        "forbidden",
        f"this endpoint needs a key of kind: {needed} (this one is a {presented.value} key)",
        outcome=f"forbidden_{presented.value}",
    )


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def authenticate(
    shops: ShopDirectory,
    token: str | None,
    allowed: frozenset[Kind],
    *,
    missing: ApiError | None = None,
) -> Shop:
    """The shop `token` is a live key of, if its kind is allowed; else 401 or 403 (ApiError)."""
    return (await authenticate_key(shops, token, allowed, missing=missing)).shop


async def authenticate_key(
    shops: ShopDirectory,
    token: str | None,
    allowed: frozenset[Kind],
    *,
    missing: ApiError | None = None,
) -> ShopKey:
    """The live key `token` is (its shop and kind), if its kind is allowed; else 401 or 403.

    Every shop key is checked here, FastAPI routes and plain ASGI endpoints alike.
    """
    key = await shops.by_token(token) if token else None
    if key is None:
        shops.refused("unauthorized")
        raise missing or unauthorized()
    if key.kind not in allowed:
        refusal = forbidden(allowed, key.kind)
        shops.refused(refusal.outcome)
        raise refusal
    return key


async def bearer_shop(request: Request, allowed: frozenset[Kind] = ADMIN_ONLY) -> Shop:
    """The shop of the bearer key presented, if of an allowed kind. Needs `app.state.shops`."""
    shops: ShopDirectory = request.app.state.shops
    token = bearer_token(request.headers.get("authorization"))
    key = await authenticate_key(shops, token, allowed)
    # After authentication, so the bucket is the shop's key kind's (services/common/ratelimit.py).
    enforce_rate_limit(request, key.shop, key.kind.value)
    return key.shop


def shop_dependency(allowed: frozenset[Kind]) -> Callable[[Request], Awaitable[Shop]]:
    """A FastAPI dependency admitting bearer keys of these kinds (through `bearer_shop`)."""

    async def dependency(request: Request) -> Shop:
        return await bearer_shop(request, allowed)

    return dependency


# The shop's admin token: segments, journeys, customer data, tags.
ShopDep = Annotated[Shop, Depends(shop_dependency(ADMIN_ONLY))]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class OperatorGuard:
    """The operator endpoints' dependency: `Authorization: Bearer <operator token>`.

    No operator token configured: every call is a 403 (the endpoints are closed, never open).
    A shop's key is not the operator token, so it is the 401 any wrong token gets. Tokens are
    compared as SHA-256 digests in constant time, current and previous both (its rotation).
    """

    def __init__(self, settings: Settings, refusals: Counter | None = None) -> None:
        self._refusals = refusals
        configured = [settings.operator_token, settings.operator_token_previous]
        self._digests = [
            _digest(token.get_secret_value()) for token in configured if token is not None
        ]

    async def __call__(self, request: Request) -> None:
        if not self._digests:
            self._count("operator_disabled")
            raise ApiError(
                403,
                "operator_disabled",
                "the operator endpoints are closed: SEGFLOW_OPERATOR_TOKEN is not set",
            )
        token = bearer_token(request.headers.get("authorization"))
        presented = _digest(token or "")
        matched = False
        for digest in self._digests:
            # No short cut: both comparisons always run.
            matched |= hmac.compare_digest(digest, presented)
        if token is None or not matched:
            self._count("operator_unauthorized")
            raise unauthorized("a valid `Authorization: Bearer <operator token>` is required")

    def _count(self, outcome: str) -> None:
        if self._refusals is not None:
            self._refusals.labels(outcome).inc()
