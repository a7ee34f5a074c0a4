"""The Admin client's Prometheus metrics, registered in a registry the caller passes in.

Label values are bounded: operations are the client's own method names, results a fixed set,
and shops the shops segflow serves.
"""

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

OPERATIONS = (
    "customers_tags",
    "tags_add",
    "tags_remove",
    "email_consent",
    "webhook_subscriptions",
    "webhook_subscription_create",
    "staged_uploads_create",
    "bulk_run",
    "bulk_poll",
    "check_access",
    "other",
)
# ok (an answer with data; userErrors are counted by tag_operations), throttled, http_429,
# http_5xx, transport (network or timeout), auth, graphql_error (a bad request), unavailable
# (gave up after the bound).
RESULTS = (
    "ok",
    "throttled",
    "http_429",
    "http_5xx",
    "transport",
    "auth",
    "graphql_error",
    "unavailable",
)


@dataclass(frozen=True)
class ShopifyClientMetrics:
    requests: Counter
    tag_operations: Counter
    throttle_wait_seconds: Counter
    bucket_available: Gauge
    bucket_maximum: Gauge
    bulk_operations: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "ShopifyClientMetrics":
        """Register the client's metrics in `registry`."""
        return cls(
            requests=Counter(
                "segflow_shopify_requests",
                "Admin API requests by operation and result (each attempt counts once)",
                ["operation", "result"],
                registry=registry,
            ),
            tag_operations=Counter(
                "segflow_shopify_tag_operations",
                "Tag changes by kind (add, remove), path (single, bulk) and result "
                "(applied, user_errors, failed)",
                ["kind", "path", "result"],
                registry=registry,
            ),
            throttle_wait_seconds=Counter(
                "segflow_shopify_throttle_wait_seconds",
                "Time spent waiting for the shop's bucket, before sending and after THROTTLED",
                ["shop"],
                registry=registry,
            ),
            bucket_available=Gauge(
                "segflow_shopify_bucket_available",
                "Points available in the shop's bucket, as its last response reported",
                ["shop"],
                registry=registry,
            ),
            bucket_maximum=Gauge(
                "segflow_shopify_bucket_maximum",
                "The shop's bucket size, as its last response reported",
                ["shop"],
                registry=registry,
            ),
            bulk_operations=Counter(
                "segflow_shopify_bulk_operations",
                "Bulk mutation operations by final status (completed, failed, canceled, ...)",
                ["status"],
                registry=registry,
            ),
        )
