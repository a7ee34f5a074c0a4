"""What the Admin client raises. userErrors are not among them: they come back in results."""

from typing import Any


class ShopifyError(Exception):
    """Base of the client's errors."""


class ShopifyUnavailable(ShopifyError):
    """Shopify could not be reached or kept refusing (throttled, 429, 5xx, timeouts) through
    every allowed attempt. Retryable later: park the operation, do not drop it."""

    def __init__(self, reason: str, attempts: int, operation: str) -> None:
        super().__init__(f"{operation}: Shopify unavailable after {attempts} attempts ({reason})")
        self.reason = reason
        self.attempts = attempts
        self.operation = operation


class ShopifyBulkPending(ShopifyUnavailable):
    """A bulk operation was started and still ran when polling gave up: it may yet apply every
    line, so its result is to be read later (`AdminClient.bulk_tags_result`), not resent."""

    def __init__(self, operation_id: str) -> None:
        super().__init__("bulk_operation_timeout", 1, "bulk_poll")
        self.operation_id = operation_id


class ShopifyAuthError(ShopifyError):
    """401 or 403: the token is wrong, revoked or lacks a scope. Retrying will not help."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"Shopify refused the access token (HTTP {status})")
        self.status = status
        self.body = body


class ShopifyGraphQLError(ShopifyError):
    """Top-level GraphQL errors other than THROTTLED (a bad document, a bad id), or another
    non-retryable HTTP answer. The request is wrong; sending it again will not help."""

    def __init__(self, operation: str, errors: Any, status: int = 200) -> None:
        super().__init__(f"{operation}: Shopify answered errors (HTTP {status}): {errors!r:.500}")
        self.operation = operation
        self.errors = errors
        self.status = status


class ShopifyBulkError(ShopifyError):
    """A bulk operation Shopify would not start (userErrors other than one in progress)."""

    def __init__(self, user_errors: Any) -> None:
        super().__init__(f"Shopify refused the bulk operation: {user_errors!r:.500}")
        self.user_errors = user_errors
