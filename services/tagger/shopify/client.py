"""AdminClient: the Admin GraphQL calls the tagger makes, for one shop.

Against Shopify it posts to https://{shop}/admin/api/{version}/graphql.json; `base_url` points
it elsewhere (the local stand-in) with the same code path. The access token is sent in
X-Shopify-Access-Token and never logged or shown in the client's repr.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from services.tagger.shopify import queries
from services.tagger.shopify.bulk import BulkRunner
from services.tagger.shopify.metrics import ShopifyClientMetrics
from services.tagger.shopify.models import (
    AccessCheck,
    BulkResult,
    ConsentResult,
    EnsureResult,
    TagKind,
    TagsResult,
    UserError,
    WebhookSubscription,
)
from services.tagger.shopify.pacer import Pacer
from services.tagger.shopify.transport import GraphQLTransport, RetryPolicy

# Shopify reads at most this many ids per nodes(ids:) call.
MAX_NODES = 250
REQUIRED_SCOPES = ("read_customers", "write_customers")
_PAGE = 50


def customer_gid(customer_id: int) -> str:
    """gid://shopify/Customer/<id>."""
    if customer_id < 1:
        raise ValueError(f"not a customer id: {customer_id}")
    return f"gid://shopify/Customer/{customer_id}"


def _user_errors(raw: Any) -> tuple[UserError, ...]:
    return tuple(UserError.from_json(e) for e in raw or () if isinstance(e, dict))


class AdminClient:
    """One shop's Admin GraphQL client. Use `async with`, or call `aclose()`."""

    def __init__(
        self,
        shop_domain: str,
        access_token: str,
        api_version: str,
        base_url: str | None = None,
        *,
        metrics: ShopifyClientMetrics | None = None,
        pacer: Pacer | None = None,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not access_token:
            raise ValueError("an access token is required")
        root = (base_url or f"https://{shop_domain}").rstrip("/")
        self.shop_domain = shop_domain
        self.api_version = api_version
        self.endpoint = f"{root}/admin/api/{api_version}/graphql.json"
        self.metrics = metrics
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._rng = rng or random.Random()
        self._transport = GraphQLTransport(
            shop=shop_domain,
            endpoint=self.endpoint,
            headers={"X-Shopify-Access-Token": access_token, "Content-Type": "application/json"},
            http=self._http,
            pacer=pacer or Pacer(),
            metrics=metrics,
            policy=policy or RetryPolicy(),
            rng=self._rng,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"AdminClient(shop={self.shop_domain!r}, endpoint={self.endpoint!r})"

    async def __aenter__(self) -> "AdminClient":
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this client opened it."""
        if self._owns_http:
            await self._http.aclose()

    @property
    def pacer(self) -> Pacer:
        return self._transport.pacer

    async def execute(
        self, operation: str, query: str, variables: dict[str, Any], expected_cost: float
    ) -> dict[str, Any]:
        """Any document, paced and retried; its `data`. (The methods below are built on it.)"""
        return await self._transport.execute(operation, query, variables, expected_cost)

    async def check_access(self, required: Sequence[str] = REQUIRED_SCOPES) -> AccessCheck:
        """A cheap query proving the token works; which of `required` scopes it lacks."""
        data = await self.execute("check_access", queries.CHECK_ACCESS, {}, 3)
        scopes = tuple(s["handle"] for s in data["currentAppInstallation"]["accessScopes"])
        return AccessCheck(
            shop_name=data["shop"]["name"],
            domain=data["shop"]["myshopifyDomain"],
            scopes=scopes,
            missing_scopes=tuple(s for s in required if s not in scopes),
            iana_timezone=data["shop"].get("ianaTimezone"),
        )

    async def customers_tags(self, ids: Sequence[int]) -> dict[int, tuple[str, ...] | None]:
        """Each customer's tags, None for a customer Shopify does not know (250 per call)."""
        found: dict[int, tuple[str, ...] | None] = {}
        for start in range(0, len(ids), MAX_NODES):
            chunk = list(ids[start : start + MAX_NODES])
            variables = {"ids": [customer_gid(i) for i in chunk]}
            data = await self.execute(
                "customers_tags", queries.CUSTOMER_TAGS, variables, len(chunk)
            )
            for customer_id, node in zip(chunk, data["nodes"], strict=True):
                found[customer_id] = tuple(node["tags"]) if node else None
        return found

    async def tags_add(self, customer_id: int, tags: Sequence[str]) -> TagsResult:
        """Add `tags` (only those; the rest stay). userErrors come back in the result."""
        return await self._tags("add", customer_id, tags, "single")

    async def tags_remove(self, customer_id: int, tags: Sequence[str]) -> TagsResult:
        """Remove `tags` (only those). userErrors come back in the result."""
        return await self._tags("remove", customer_id, tags, "single")

    async def _tags(
        self, kind: TagKind, customer_id: int, tags: Sequence[str], path: str
    ) -> TagsResult:
        operation, field, query = (
            ("tags_add", "tagsAdd", queries.TAGS_ADD)
            if kind == "add"
            else ("tags_remove", "tagsRemove", queries.TAGS_REMOVE)
        )
        variables = {"id": customer_gid(customer_id), "tags": list(tags)}
        try:
            data = await self.execute(operation, query, variables, queries.MUTATION_COST)
        except Exception:
            self._tag_metric(kind, path, "failed")
            raise
        payload = data[field] or {}
        node = payload.get("node") or {}
        result = TagsResult(
            customer_id=customer_id,
            tags=tuple(node["tags"]) if "tags" in node else None,
            user_errors=_user_errors(payload.get("userErrors")),
        )
        self._tag_metric(kind, path, "applied" if result.ok else "user_errors")
        return result

    def _tag_metric(self, kind: str, path: str, result: str, count: int = 1) -> None:
        if self.metrics is not None and count:
            self.metrics.tag_operations.labels(kind, path, result).inc(count)

    async def set_email_consent(
        self,
        customer_id: int,
        state: str,
        opt_in_level: str | None = None,
        updated_at: datetime | None = None,
    ) -> ConsentResult:
        """Set email marketing consent (SUBSCRIBED, UNSUBSCRIBED, PENDING, NOT_SUBSCRIBED)."""
        consent: dict[str, Any] = {"marketingState": state}
        if opt_in_level is not None:
            consent["marketingOptInLevel"] = opt_in_level
        if updated_at is not None:
            if updated_at.tzinfo is None:
                raise ValueError("updated_at must be timezone-aware")
            consent["consentUpdatedAt"] = updated_at.isoformat()
        variables = {
            "input": {"customerId": customer_gid(customer_id), "emailMarketingConsent": consent}
        }
        data = await self.execute(
            "email_consent", queries.EMAIL_CONSENT, variables, queries.MUTATION_COST
        )
        payload = data["customerEmailMarketingConsentUpdate"] or {}
        customer = payload.get("customer") or {}
        marketing = customer.get("emailMarketingConsent") or {}
        return ConsentResult(
            customer_id=customer_id,
            marketing_state=marketing.get("marketingState"),
            user_errors=_user_errors(payload.get("userErrors")),
        )

    async def webhook_subscriptions(self) -> list[WebhookSubscription]:
        """Every webhook subscription this app holds on the shop."""
        found: list[WebhookSubscription] = []
        after: str | None = None
        while True:
            variables = {"first": _PAGE, "after": after}
            data = await self.execute(
                "webhook_subscriptions", queries.WEBHOOK_SUBSCRIPTIONS, variables, 2 + _PAGE
            )
            page = data["webhookSubscriptions"]
            found += [WebhookSubscription(n["id"], n["topic"], n["uri"]) for n in page["nodes"]]
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    async def ensure_webhook_subscriptions(
        self, callback_url: str, topics: Sequence[str]
    ) -> EnsureResult:
        """Subscribe `callback_url` to each topic (GraphQL enum names, e.g. CUSTOMERS_UPDATE)
        it is not subscribed to yet; existing subscriptions are kept, none are removed."""
        existing = {(s.topic, s.uri): s for s in await self.webhook_subscriptions()}
        kept, created, failed = [], [], []
        for topic in dict.fromkeys(topics):
            if (topic, callback_url) in existing:
                kept.append(existing[(topic, callback_url)])
                continue
            data = await self.execute(
                "webhook_subscription_create",
                queries.WEBHOOK_SUBSCRIPTION_CREATE,
                {"topic": topic, "uri": callback_url},
                queries.MUTATION_COST,
            )
            payload = data["webhookSubscriptionCreate"] or {}
            made = payload.get("webhookSubscription")
            if made:
                created.append(WebhookSubscription(made["id"], made["topic"], made["uri"]))
            else:
                failed.append((topic, _user_errors(payload.get("userErrors"))))
        return EnsureResult(tuple(kept), tuple(created), tuple(failed))

    async def run_bulk_tags(
        self,
        kind: TagKind,
        lines: Sequence[tuple[int, Sequence[str]]],
        timeout: float = 6 * 3600.0,
        stop: asyncio.Event | None = None,
    ) -> BulkResult:
        """Add (or remove) tags on many customers with one bulk mutation: stage and upload the
        JSONL, run it, poll until it ends (up to `timeout` s or `stop`, then
        ShopifyBulkPending), read the result file. Lines that did not apply come back as
        failures (`retry_failures_singly`)."""
        started = time.monotonic()
        runner = BulkRunner(self, self._http, self._rng, timeout=timeout, stop=stop)
        result = await runner.run(kind, lines, started)
        return self._counted(kind, result)

    async def bulk_tags_result(
        self, kind: TagKind, operation_id: str, lines: Sequence[tuple[int, Sequence[str]]]
    ) -> BulkResult | None:
        """One more look at a bulk tag operation polling gave up on: its result, or None while
        it still runs."""
        runner = BulkRunner(self, self._http, self._rng)
        result = await runner.outcome(kind, operation_id, lines)
        return None if result is None else self._counted(kind, result)

    def _counted(self, kind: TagKind, result: BulkResult) -> BulkResult:
        if self.metrics is not None:
            self.metrics.bulk_operations.labels(result.status.lower()).inc()
        self._tag_metric(kind, "bulk", "applied", result.applied)
        refused = sum(1 for f in result.failures if not f.retryable)
        self._tag_metric(kind, "bulk", "user_errors", refused)
        self._tag_metric(kind, "bulk", "failed", len(result.failures) - refused)
        return result

    async def retry_failures_singly(self, kind: TagKind, result: BulkResult) -> list[TagsResult]:
        """Send each failed line of a bulk run again as its own tagsAdd/tagsRemove."""
        return [
            await self._tags(kind, failure.customer_id, failure.tags, "single")
            for failure in result.failures
        ]
