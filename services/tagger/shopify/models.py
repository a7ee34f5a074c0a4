"""The client's results: plain immutable records, no HTTP or GraphQL left in them."""

from dataclasses import dataclass
from typing import Any, Literal

TagKind = Literal["add", "remove"]


@dataclass(frozen=True)
class UserError:
    """A userError of a mutation: the input was refused; the request itself went through."""

    field: tuple[str, ...] | None
    message: str
    code: str | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "UserError":
        field = raw.get("field")
        return cls(
            field=tuple(str(part) for part in field) if isinstance(field, list) else None,
            message=str(raw.get("message", "")),
            code=raw.get("code"),
        )


@dataclass(frozen=True)
class TagsResult:
    """A tagsAdd/tagsRemove on one customer: its tags afterwards when Shopify returned them."""

    customer_id: int
    tags: tuple[str, ...] | None
    user_errors: tuple[UserError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.user_errors


@dataclass(frozen=True)
class ConsentResult:
    customer_id: int
    marketing_state: str | None
    user_errors: tuple[UserError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.user_errors


@dataclass(frozen=True)
class WebhookSubscription:
    id: str
    topic: str
    uri: str


@dataclass(frozen=True)
class EnsureResult:
    """What ensure_webhook_subscriptions found and did, topic by topic."""

    kept: tuple[WebhookSubscription, ...]
    created: tuple[WebhookSubscription, ...]
    failed: tuple[tuple[str, tuple[UserError, ...]], ...] = ()


@dataclass(frozen=True)
class AccessCheck:
    shop_name: str
    domain: str
    scopes: tuple[str, ...]
    missing_scopes: tuple[str, ...]
    # The shop's IANA time zone from its settings (e.g. "America/New_York").
    iana_timezone: str | None = None

    @property
    def ok(self) -> bool:
        return not self.missing_scopes


@dataclass(frozen=True)
class BulkLineFailure:
    """One line of a bulk run that did not apply. `retryable` when Shopify failed it (an
    error, or no result line at all) rather than refusing its input (userErrors)."""

    line_number: int
    customer_id: int
    tags: tuple[str, ...]
    messages: tuple[str, ...]
    retryable: bool


@dataclass(frozen=True)
class BulkResult:
    operation_id: str
    status: str
    error_code: str | None
    lines: int
    applied: int
    failures: tuple[BulkLineFailure, ...]
    seconds: float
