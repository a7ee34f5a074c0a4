"""The stand-in's own control API under /_standin/ (not part of Shopify's protocol): create
shops, seed and read customers, inject faults, read the request and webhook delivery logs.

It has no authentication: the stand-in is a test double that listens on loopback only.
"""

import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.errors import ApiError
from services.shopify_standin.context import Runtime
from services.shopify_standin.payloads import gid
from services.shopify_standin.state import (
    DEFAULT_BULK_MUTATION_LIMIT,
    DEFAULT_SCOPES,
    DEFAULT_TIMEZONE,
    Customer,
    Fault,
    Shop,
    iso,
    utc_now,
)

MarketingState = Literal["NOT_SUBSCRIBED", "PENDING", "SUBSCRIBED", "UNSUBSCRIBED"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShopIn(_Strict):
    domain: str = Field(min_length=1, max_length=255, pattern=r"^[a-z0-9][a-z0-9.-]*$")
    access_token: str = Field(min_length=1)
    webhook_secret: str = Field(min_length=1)
    # A Standard plan's figures by default; tests make them small.
    bucket_size: float = Field(default=2000, gt=0)
    restore_rate: float = Field(default=100, gt=0)
    auto_create_customers: bool = False
    bulk_mutation_limit: int = Field(default=DEFAULT_BULK_MUTATION_LIMIT, ge=1)
    scopes: list[str] = Field(default_factory=lambda: list(DEFAULT_SCOPES))
    iana_timezone: str = DEFAULT_TIMEZONE

    @field_validator("iana_timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        return known_zone(name)


class ShopSettingsIn(_Strict):
    """What a merchant can change in their shop's settings later (the time zone)."""

    iana_timezone: str

    @field_validator("iana_timezone")
    @classmethod
    def _zone(cls, name: str) -> str:
        return known_zone(name)


def known_zone(name: str) -> str:
    """An IANA zone name this machine knows, as Shopify's settings only offer those."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc
    return name


class CustomerIn(_Strict):
    id: int = Field(ge=1, lt=2**63)
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    tags: list[str] = Field(default_factory=list)
    email_marketing_state: MarketingState = "NOT_SUBSCRIBED"
    opt_in_level: Literal["SINGLE_OPT_IN", "CONFIRMED_OPT_IN", "UNKNOWN"] | None = None


class Generate(_Strict):
    """`count` customers with ids from `first_id`, emails customer-<id>@`email_domain`."""

    first_id: int = Field(ge=1)
    count: int = Field(ge=1, le=2_000_000)
    email_domain: str = "example.com"
    tags: list[str] = Field(default_factory=list)


class CustomersIn(_Strict):
    customers: list[CustomerIn] = Field(default_factory=list)
    generate: Generate | None = None

    @model_validator(mode="after")
    def _something(self) -> "CustomersIn":
        if not self.customers and self.generate is None:
            raise ValueError("give customers, generate, or both")
        return self


class FaultIn(_Strict):
    kind: Literal["status", "throttle_429", "slow", "bulk"]
    count: int = Field(default=1, ge=1)
    status: int = Field(default=503, ge=400, le=599)
    retry_after: float = Field(default=1.0, ge=0)
    delay_ms: int = Field(default=0, ge=0, le=600_000)
    after_execute: bool = False
    lines: list[int] = Field(default_factory=list)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def _shop(runtime: Runtime, domain: str) -> Shop:
    shop = runtime.state.shops.get(domain)
    if shop is None:
        raise ApiError(404, "unknown_shop", f"no shop {domain} on this stand-in")
    return shop


def shop_view(shop: Shop) -> dict[str, Any]:
    """A shop's settings and live figures; its token and webhook secret are not shown."""
    return {
        "domain": shop.domain,
        "id": gid("Shop", shop.numeric_id),
        "bucket_size": shop.bucket.maximum,
        "restore_rate": shop.bucket.restore_rate,
        "bucket_available": shop.bucket.level(time.monotonic()),
        "auto_create_customers": shop.auto_create_customers,
        "bulk_mutation_limit": shop.bulk_mutation_limit,
        "scopes": list(shop.scopes),
        "iana_timezone": shop.iana_timezone,
        "customers": len(shop.customers),
        "webhook_subscriptions": len(shop.subscriptions),
        "pending_faults": len(shop.faults),
    }


def customer_json(customer: Customer) -> dict[str, Any]:
    """A customer as the control API shows it."""
    return {
        "id": customer.id,
        "admin_graphql_api_id": gid("Customer", customer.id),
        "email": customer.email,
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "tags": list(customer.tags),
        "email_marketing_consent": {
            "state": customer.marketing_state,
            "opt_in_level": customer.opt_in_level,
            "consent_updated_at": iso(customer.consent_updated_at),
        },
        "updated_at": iso(customer.updated_at),
    }


router = APIRouter(prefix="/_standin")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.post("/shops", status_code=201)
async def create_shop(given: ShopIn, runtime: RuntimeDep) -> dict[str, Any]:
    try:
        shop = runtime.state.add_shop(
            given.domain,
            given.access_token,
            given.webhook_secret,
            given.bucket_size,
            given.restore_rate,
            auto_create_customers=given.auto_create_customers,
            bulk_mutation_limit=given.bulk_mutation_limit,
            scopes=tuple(given.scopes),
            iana_timezone=given.iana_timezone,
        )
    except ValueError as exc:
        raise ApiError(409, "shop_exists", str(exc)) from exc
    return shop_view(shop)


@router.get("/shops/{domain}")
async def get_shop(domain: str, runtime: RuntimeDep) -> dict[str, Any]:
    return shop_view(_shop(runtime, domain))


@router.patch("/shops/{domain}")
async def change_shop(domain: str, given: ShopSettingsIn, runtime: RuntimeDep) -> dict[str, Any]:
    """Change a shop's settings as its merchant would (its time zone)."""
    shop = _shop(runtime, domain)
    shop.iana_timezone = given.iana_timezone
    return shop_view(shop)


@router.post("/shops/{domain}/customers")
async def upsert_customers(domain: str, given: CustomersIn, runtime: RuntimeDep) -> dict[str, int]:
    """Create or replace customers (existing ids are overwritten)."""
    shop = _shop(runtime, domain)
    now = utc_now()
    count = 0
    if given.generate is not None:
        spec = given.generate
        for number in range(spec.first_id, spec.first_id + spec.count):
            shop.customers[number] = Customer(
                id=number,
                email=f"customer-{number}@{spec.email_domain}",
                tags=list(spec.tags),
                created_at=now,
                updated_at=now,
            )
        count += spec.count
    for item in given.customers:
        shop.customers[item.id] = Customer(
            id=item.id,
            email=item.email,
            first_name=item.first_name,
            last_name=item.last_name,
            tags=list(item.tags),
            marketing_state=item.email_marketing_state,
            opt_in_level=item.opt_in_level,
            created_at=now,
            updated_at=now,
        )
    count += len(given.customers)
    return {"upserted": count, "customers": len(shop.customers)}


@router.get("/shops/{domain}/customers/{customer_id}")
async def get_customer(domain: str, customer_id: int, runtime: RuntimeDep) -> dict[str, Any]:
    customer = _shop(runtime, domain).customers.get(customer_id)
    if customer is None:
        raise ApiError(404, "unknown_customer", f"no customer {customer_id} in {domain}")
    return customer_json(customer)


@router.post("/shops/{domain}/faults", status_code=201)
async def add_fault(domain: str, given: FaultIn, runtime: RuntimeDep) -> dict[str, int]:
    """Queue a fault for the shop's next GraphQL requests (or its next bulk run)."""
    shop = _shop(runtime, domain)
    shop.faults.append(
        Fault(
            kind=given.kind,
            count=given.count,
            status=429 if given.kind == "throttle_429" else given.status,
            retry_after=given.retry_after,
            delay_ms=given.delay_ms,
            after_execute=given.after_execute,
            lines=frozenset(given.lines),
        )
    )
    return {"pending_faults": len(shop.faults)}


@router.delete("/shops/{domain}/faults", status_code=204)
async def clear_faults(domain: str, runtime: RuntimeDep) -> Response:
    _shop(runtime, domain).faults.clear()
    return Response(status_code=204)


@router.get("/shops/{domain}/requests")
async def request_log(
    domain: str, runtime: RuntimeDep, last: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, Any]:
    """The shop's GraphQL requests, oldest first: time, operation, outcome, requested and
    actual cost, bucket level before and after."""
    entries = list(_shop(runtime, domain).request_log)
    return {"requests": entries[-last:] if last else entries}


@router.get("/deliveries")
async def delivery_log(
    runtime: RuntimeDep,
    shop: str | None = None,
    topic: str | None = None,
) -> dict[str, Any]:
    """Webhook deliveries, oldest first, with their status, attempts and payload."""
    entries = [
        entry
        for entry in runtime.state.delivery_log
        if (shop is None or entry["shop"] == shop) and (topic is None or entry["topic"] == topic)
    ]
    return {"deliveries": entries}
