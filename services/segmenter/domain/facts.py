"""CustomerFacts: the flat view of one customer that segment rules are evaluated against.

Every field is also a column of the `customers` table with the same name, so a rule compiles
to Python over this dataclass and to SQL over that table with the same meaning. The reducer
derives facts from the customer's state as of an evaluation time (rolling windows, RFM,
lifecycle stage); `derived_until` says when a derived value next changes by time alone.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

LIFECYCLE_STAGES = ("potential", "new", "active", "loyal", "at_risk", "churned")
RFM_SEGMENTS = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "promising",
    "needs_attention",
    "at_risk",
    "cant_lose",
    "hibernating",
    "lost",
)


@dataclass(frozen=True)
class CustomerFacts:
    """What is known about one customer of one shop; None means unknown (or never happened)."""

    shop_id: int
    customer_id: int
    # Profile
    registered_at: datetime | None = None
    email: str | None = None
    accepts_email_marketing: bool = False
    accepts_sms_marketing: bool = False
    country_code: str | None = None
    province_code: str | None = None
    city: str | None = None
    birthday_month: int | None = None
    tags: tuple[str, ...] = ()
    account_state: str | None = None
    # Orders (cancelled orders excluded; money in shop currency, net of refunds)
    orders_count: int = 0
    total_spent: Decimal = Decimal(0)
    average_order_value: Decimal | None = None
    largest_order_value: Decimal | None = None
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    refunds_count: int = 0
    refunded_total: Decimal = Decimal(0)
    cancelled_orders_count: int = 0
    orders_30d: int = 0
    orders_90d: int = 0
    orders_365d: int = 0
    spent_30d: Decimal = Decimal(0)
    spent_90d: Decimal = Decimal(0)
    spent_365d: Decimal = Decimal(0)
    product_type_counts: Mapping[str, int] = field(default_factory=dict)
    vendor_counts: Mapping[str, int] = field(default_factory=dict)
    product_counts: Mapping[str, int] = field(default_factory=dict)
    top_product_type: str | None = None
    # Carts and engagement
    abandoned_checkouts: int = 0
    last_abandoned_checkout_at: datetime | None = None
    page_views: int = 0
    product_views: int = 0
    added_to_cart: int = 0
    emails_opened: int = 0
    emails_clicked: int = 0
    reviews_written: int = 0
    referrals: int = 0
    last_engaged_at: datetime | None = None
    # Scores (None while the customer has no order)
    rfm_recency: int | None = None
    rfm_frequency: int | None = None
    rfm_monetary: int | None = None
    rfm_segment: str | None = None
    lifecycle_stage: str = "potential"
