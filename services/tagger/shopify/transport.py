"""Sending one Admin GraphQL document: paced by the shop's bucket, retried on THROTTLED-in-200,
429 (after its Retry-After), 5xx and network failures or timeouts with jittered exponential
backoff, up to a bound; then `ShopifyUnavailable`. 401/403 and other GraphQL errors are final.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.common.backoff import Backoff
from services.tagger.shopify.errors import (
    ShopifyAuthError,
    ShopifyGraphQLError,
    ShopifyUnavailable,
)
from services.tagger.shopify.metrics import OPERATIONS, ShopifyClientMetrics
from services.tagger.shopify.pacer import Pacer, throttle_status

logger = logging.getLogger(__name__)

# Extra wait after a THROTTLED answer, as a share of the computed wait: the server's clock
# and ours differ by a round trip.
_THROTTLE_SLACK = 0.1
# Never wait longer than this for a Retry-After, whatever the server says.
_MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per request (the first included), and the backoff between failed attempts."""

    max_attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


@dataclass
class _Retry:
    reason: str
    wait: float


def _is_throttled(body: Any) -> bool:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return False
    return any(
        isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED"
        for e in errors
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER) if value is not None else None
    except ValueError:
        return None


@dataclass
class GraphQLTransport:
    """Posts documents to one shop's Admin GraphQL endpoint through its pacer."""

    shop: str
    endpoint: str
    headers: dict[str, str]
    http: httpx.AsyncClient
    pacer: Pacer
    metrics: ShopifyClientMetrics | None = None
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # The requested cost Shopify last reported per operation: the next estimate.
    _costs: dict[str, float] = field(default_factory=dict)

    def _count(self, operation: str, result: str) -> None:
        if self.metrics is not None:
            label = operation if operation in OPERATIONS else "other"
            self.metrics.requests.labels(label, result).inc()

    def _waited(self, seconds: float) -> None:
        if self.metrics is not None and seconds > 0:
            self.metrics.throttle_wait_seconds.labels(self.shop).inc(seconds)

    def _gauge(self, body: Any) -> None:
        status = throttle_status(body)
        if self.metrics is not None and status is not None:
            self.metrics.bucket_maximum.labels(self.shop).set(status[0])
            self.metrics.bucket_available.labels(self.shop).set(status[1])

    async def execute(
        self, operation: str, query: str, variables: dict[str, Any], expected_cost: float
    ) -> dict[str, Any]:
        """The response's `data`, after as many attempts as the policy allows."""
        backoff = Backoff(self.policy.backoff_initial, self.policy.backoff_max, self.rng)
        payload = {"query": query, "variables": variables}
        last = "no attempt"
        for attempt in range(1, self.policy.max_attempts + 1):
            cost = self._costs.get(operation, expected_cost)
            ticket, waited = await self.pacer.acquire(cost)
            self._waited(waited)
            try:
                outcome = await self._attempt(operation, payload, ticket, attempt, backoff)
            finally:
                self.pacer.release(ticket)
            if not isinstance(outcome, _Retry):
                return outcome
            last = outcome.reason
            if attempt == self.policy.max_attempts:
                break
            logger.info(
                "shopify %s for %s: %s, retrying in %.2f s (attempt %d of %d)",
                operation,
                self.shop,
                outcome.reason,
                outcome.wait,
                attempt,
                self.policy.max_attempts,
            )
            if outcome.reason == "throttled":
                self._waited(outcome.wait)
            await self.sleep(outcome.wait)
        self._count(operation, "unavailable")
        raise ShopifyUnavailable(last, self.policy.max_attempts, operation)

    async def _attempt(
        self,
        operation: str,
        payload: dict[str, Any],
        ticket: int,
        attempt: int,
        backoff: Backoff,
    ) -> dict[str, Any] | _Retry:
        try:
            response = await self.http.post(self.endpoint, json=payload, headers=self.headers)
        except httpx.TransportError as exc:  # timeouts, refused or dropped connections
            self._count(operation, "transport")
            return _Retry(f"{type(exc).__name__}", backoff.delay(attempt))
        status = response.status_code
        if status in (401, 403):
            self._count(operation, "auth")
            raise ShopifyAuthError(status, _json(response))
        if status == 429:
            self._count(operation, "http_429")
            after = _retry_after(response)
            jitter = self.rng.uniform(0, 0.1 * after) if after else 0.0
            return _Retry(
                "http_429", after + jitter if after is not None else backoff.delay(attempt)
            )
        if status >= 500:
            self._count(operation, "http_5xx")
            return _Retry(f"http_{status}", backoff.delay(attempt))
        body = _json(response)
        if status != 200 or not isinstance(body, dict):
            self._count(operation, "graphql_error")
            raise ShopifyGraphQLError(operation, body, status)
        available = self.pacer.observe(ticket, body)
        self._gauge(body)
        figures = throttle_status(body)
        if figures is not None and figures[3] is not None:
            self._costs[operation] = figures[3]
        if _is_throttled(body):
            self._count(operation, "throttled")
            return _Retry("throttled", self._throttle_wait(figures, available, backoff, attempt))
        data = body.get("data")
        if body.get("errors"):
            # Partial data with errors (an input array too long, a bad id) is still a
            # request that did not do what was asked: never read it as a success.
            self._count(operation, "graphql_error")
            raise ShopifyGraphQLError(operation, body.get("errors"))
        if not isinstance(data, dict):
            self._count(operation, "graphql_error")
            raise ShopifyGraphQLError(operation, body)
        self._count(operation, "ok")
        return data

    def _throttle_wait(
        self,
        figures: tuple[float, float, float, float | None] | None,
        available: float | None,
        backoff: Backoff,
        attempt: int,
    ) -> float:
        """(requested − currentlyAvailable) / restoreRate, plus a little jitter."""
        requested = figures[3] if figures is not None else None
        if figures is None or requested is None or available is None:
            return backoff.delay(attempt)
        rate = figures[2]
        wait = max(requested - available, 0.0) / rate
        return wait + self.rng.uniform(0, _THROTTLE_SLACK * wait + 0.01)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:500]
