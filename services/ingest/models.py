"""Request bodies of the custom-event and Flow endpoints."""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from services.common.envelope import CustomEventType, UtcDatetime
from services.common.shopify import parse_shopify_id


def _customer_id(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError("must be a Shopify customer id")
    parsed = parse_shopify_id(value) if isinstance(value, int | str) else None
    if parsed is None or parsed <= 0:
        raise ValueError("must be a Shopify customer id (a positive integer or a GID)")
    return str(parsed)


CustomerId = Annotated[str, BeforeValidator(_customer_id)]
EventId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]


def _bounded_properties(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > 100:
        raise ValueError("at most 100 properties")
    return value


Properties = Annotated[dict[str, Any], AfterValidator(_bounded_properties)]


class CustomEvent(BaseModel):
    """One behavioural event; `event_id` is the client's own id, so a retry is not counted twice."""

    model_config = ConfigDict(extra="forbid")

    event_id: EventId
    type: CustomEventType
    customer_id: CustomerId
    occurred_at: UtcDatetime | None = None
    properties: Properties = Field(default_factory=dict)


class CustomEventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[CustomEvent] = Field(min_length=1)


class FlowEvent(BaseModel):
    """What a Shopify Flow "Send HTTP request" action posts (the merchant writes it in Liquid)."""

    model_config = ConfigDict(extra="forbid")

    event_id: EventId
    event: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$")]
    customer_id: CustomerId | None = None
    occurred_at: UtcDatetime | None = None
    properties: Properties = Field(default_factory=dict)
