"""The rule variables over CustomerFacts and the segment actions, as business-rules declares them.

SegmentVariables is what the engine evaluates (the reference semantics); VARIABLES says, per
variable, which customers column it reads and how, for the compilers and the scheduler.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar, cast

from business_rules.actions import BaseActions, rule_action
from business_rules.fields import FIELD_TEXT
from business_rules.operators import BooleanType
from business_rules.utils import export_rule_data
from business_rules.variables import BaseVariables, rule_variable

from services.segmenter.domain.facts import LIFECYCLE_STAGES, RFM_SEGMENTS, CustomerFacts
from services.segmenter.domain.rules.operators import (
    OPERATOR_TYPES,
    CountMapType,
    NumberType,
    OptionalNumberType,
    SelectSetType,
    TextType,
)

DAY = timedelta(days=1)

F = TypeVar("F", bound=Callable[..., Any])


def variable(
    field_type: type, label: str | None = None, options: list[str] | None = None
) -> Callable[[F], F]:
    """business-rules' rule_variable, typed."""
    return cast(Callable[[F], F], rule_variable(field_type, label=label, options=options))


def action(params: dict[str, str]) -> Callable[[F], F]:
    """business-rules' rule_action, typed."""
    return cast(Callable[[F], F], rule_action(params=params))


def days_since(at: datetime | None, now: datetime) -> int | None:
    """Whole days from at to now, floored; None when at is unknown."""
    return None if at is None else (now - at) // DAY


class SegmentVariables(BaseVariables):  # type: ignore[misc]
    """One customer's facts at one moment, as the business-rules engine sees them."""

    def __init__(self, facts: CustomerFacts, now: datetime) -> None:
        self.facts = facts
        self.now = now

    # Orders and money (never unknown)
    @variable(NumberType)
    def orders_count(self) -> int:
        return self.facts.orders_count

    @variable(NumberType)
    def total_spent(self) -> Decimal:
        return self.facts.total_spent

    @variable(NumberType, label="Lifetime Value (net spent)")
    def lifetime_value(self) -> Decimal:
        return self.facts.total_spent

    @variable(NumberType)
    def refunds_count(self) -> int:
        return self.facts.refunds_count

    @variable(NumberType)
    def refunded_total(self) -> Decimal:
        return self.facts.refunded_total

    @variable(NumberType)
    def cancelled_orders_count(self) -> int:
        return self.facts.cancelled_orders_count

    @variable(NumberType)
    def orders_last_30_days(self) -> int:
        return self.facts.orders_30d

    @variable(NumberType)
    def orders_last_90_days(self) -> int:
        return self.facts.orders_90d

    @variable(NumberType)
    def orders_last_365_days(self) -> int:
        return self.facts.orders_365d

    @variable(NumberType)
    def spent_last_30_days(self) -> Decimal:
        return self.facts.spent_30d

    @variable(NumberType)
    def spent_last_90_days(self) -> Decimal:
        return self.facts.spent_90d

    @variable(NumberType)
    def spent_last_365_days(self) -> Decimal:
        return self.facts.spent_365d

    # Carts and engagement
    @variable(NumberType)
    def abandoned_checkouts(self) -> int:
        return self.facts.abandoned_checkouts

    @variable(NumberType)
    def page_views(self) -> int:
        return self.facts.page_views

    @variable(NumberType)
    def product_views(self) -> int:
        return self.facts.product_views

    @variable(NumberType)
    def added_to_cart(self) -> int:
        return self.facts.added_to_cart

    @variable(NumberType)
    def emails_opened(self) -> int:
        return self.facts.emails_opened

    @variable(NumberType)
    def emails_clicked(self) -> int:
        return self.facts.emails_clicked

    @variable(NumberType)
    def reviews_written(self) -> int:
        return self.facts.reviews_written

    @variable(NumberType)
    def referrals(self) -> int:
        return self.facts.referrals

    # Numbers that may be unknown
    @variable(OptionalNumberType)
    def average_order_value(self) -> Decimal | None:
        return self.facts.average_order_value

    @variable(OptionalNumberType)
    def largest_order_value(self) -> Decimal | None:
        return self.facts.largest_order_value

    @variable(OptionalNumberType, label="Birthday Month (1-12)")
    def birthday_month(self) -> int | None:
        return self.facts.birthday_month

    @variable(OptionalNumberType, label="RFM Recency Score")
    def rfm_recency(self) -> int | None:
        return self.facts.rfm_recency

    @variable(OptionalNumberType, label="RFM Frequency Score")
    def rfm_frequency(self) -> int | None:
        return self.facts.rfm_frequency

    @variable(OptionalNumberType, label="RFM Monetary Score")
    def rfm_monetary(self) -> int | None:
        return self.facts.rfm_monetary

    # Whole days since a moment (unknown while it never happened)
    @variable(OptionalNumberType)
    def days_since_registration(self) -> int | None:
        return days_since(self.facts.registered_at, self.now)

    @variable(OptionalNumberType)
    def days_since_first_order(self) -> int | None:
        return days_since(self.facts.first_order_at, self.now)

    @variable(OptionalNumberType)
    def days_since_last_order(self) -> int | None:
        return days_since(self.facts.last_order_at, self.now)

    @variable(OptionalNumberType)
    def days_since_last_engagement(self) -> int | None:
        return days_since(self.facts.last_engaged_at, self.now)

    @variable(OptionalNumberType)
    def days_since_last_abandoned_checkout(self) -> int | None:
        return days_since(self.facts.last_abandoned_checkout_at, self.now)

    # Text (unknown reads as "")
    @variable(TextType)
    def email(self) -> str | None:
        return self.facts.email

    @variable(TextType)
    def country_code(self) -> str | None:
        return self.facts.country_code

    @variable(TextType)
    def province_code(self) -> str | None:
        return self.facts.province_code

    @variable(TextType)
    def city(self) -> str | None:
        return self.facts.city

    @variable(TextType)
    def top_product_type(self) -> str | None:
        return self.facts.top_product_type

    @variable(TextType, label="RFM Segment", options=list(RFM_SEGMENTS))
    def rfm_segment(self) -> str | None:
        return self.facts.rfm_segment

    @variable(TextType, options=list(LIFECYCLE_STAGES))
    def lifecycle_stage(self) -> str:
        return self.facts.lifecycle_stage

    @variable(TextType)
    def account_state(self) -> str | None:
        return self.facts.account_state

    # Consent
    @variable(BooleanType)
    def accepts_email_marketing(self) -> bool:
        return self.facts.accepts_email_marketing

    @variable(BooleanType)
    def accepts_sms_marketing(self) -> bool:
        return self.facts.accepts_sms_marketing

    # Sets of names (case-insensitive)
    @variable(SelectSetType)
    def tags(self) -> tuple[str, ...]:
        return tuple(self.facts.tags)

    @variable(SelectSetType)
    def product_types_bought(self) -> tuple[str, ...]:
        return tuple(self.facts.product_type_counts)

    @variable(SelectSetType)
    def vendors_bought(self) -> tuple[str, ...]:
        return tuple(self.facts.vendor_counts)

    @variable(SelectSetType, label="Products Bought (product ids)")
    def products_bought(self) -> tuple[str, ...]:
        return tuple(self.facts.product_counts)

    # Order counts by name
    @variable(CountMapType)
    def product_type_order_counts(self) -> Mapping[str, int]:
        return self.facts.product_type_counts

    @variable(CountMapType)
    def vendor_order_counts(self) -> Mapping[str, int]:
        return self.facts.vendor_counts

    @variable(CountMapType, label="Product Order Counts (by product id)")
    def product_order_counts(self) -> Mapping[str, int]:
        return self.facts.product_counts


class SegmentActions(BaseActions):  # type: ignore[misc]
    """What a segment does on entry; declared for the engine and editors, applied by the tagger."""

    @action(params={"tag": FIELD_TEXT})
    def add_tag(self, tag: str) -> None:
        """Add a Shopify customer tag."""

    @action(params={"tag": FIELD_TEXT})
    def remove_tag(self, tag: str) -> None:
        """Remove a Shopify customer tag."""

    @action(params={"journey": FIELD_TEXT})
    def enroll_journey(self, journey: str) -> None:
        """Enrol the customer in an email journey."""


class Source(Enum):
    """How a variable is read from its column."""

    VALUE = "value"  # the column as is
    DAYS_SINCE = "days_since"  # whole days from the column's timestamp to now
    KEYS = "keys"  # the keys of a count map


@dataclass(frozen=True)
class Variable:
    """A rule variable: its operator type, the customers column (= CustomerFacts field) it reads."""

    name: str
    field_type: type[Any]
    column: str
    source: Source = Source.VALUE


def _variables(*declared: Variable) -> dict[str, Variable]:
    return {v.name: v for v in declared}


_N, _ON, _T, _S, _C = NumberType, OptionalNumberType, TextType, SelectSetType, CountMapType
_DAYS, _KEYS = Source.DAYS_SINCE, Source.KEYS

VARIABLES: dict[str, Variable] = _variables(
    Variable("orders_count", _N, "orders_count"),
    Variable("total_spent", _N, "total_spent"),
    Variable("lifetime_value", _N, "total_spent"),
    Variable("refunds_count", _N, "refunds_count"),
    Variable("refunded_total", _N, "refunded_total"),
    Variable("cancelled_orders_count", _N, "cancelled_orders_count"),
    Variable("orders_last_30_days", _N, "orders_30d"),
    Variable("orders_last_90_days", _N, "orders_90d"),
    Variable("orders_last_365_days", _N, "orders_365d"),
    Variable("spent_last_30_days", _N, "spent_30d"),
    Variable("spent_last_90_days", _N, "spent_90d"),
    Variable("spent_last_365_days", _N, "spent_365d"),
    Variable("abandoned_checkouts", _N, "abandoned_checkouts"),
    Variable("page_views", _N, "page_views"),
    Variable("product_views", _N, "product_views"),
    Variable("added_to_cart", _N, "added_to_cart"),
    Variable("emails_opened", _N, "emails_opened"),
    Variable("emails_clicked", _N, "emails_clicked"),
    Variable("reviews_written", _N, "reviews_written"),
    Variable("referrals", _N, "referrals"),
    Variable("average_order_value", _ON, "average_order_value"),
    Variable("largest_order_value", _ON, "largest_order_value"),
    Variable("birthday_month", _ON, "birthday_month"),
    Variable("rfm_recency", _ON, "rfm_recency"),
    Variable("rfm_frequency", _ON, "rfm_frequency"),
    Variable("rfm_monetary", _ON, "rfm_monetary"),
    Variable("days_since_registration", _ON, "registered_at", _DAYS),
    Variable("days_since_first_order", _ON, "first_order_at", _DAYS),
    Variable("days_since_last_order", _ON, "last_order_at", _DAYS),
    Variable("days_since_last_engagement", _ON, "last_engaged_at", _DAYS),
    Variable("days_since_last_abandoned_checkout", _ON, "last_abandoned_checkout_at", _DAYS),
    Variable("email", _T, "email"),
    Variable("country_code", _T, "country_code"),
    Variable("province_code", _T, "province_code"),
    Variable("city", _T, "city"),
    Variable("top_product_type", _T, "top_product_type"),
    Variable("rfm_segment", _T, "rfm_segment"),
    Variable("lifecycle_stage", _T, "lifecycle_stage"),
    Variable("account_state", _T, "account_state"),
    Variable("accepts_email_marketing", BooleanType, "accepts_email_marketing"),
    Variable("accepts_sms_marketing", BooleanType, "accepts_sms_marketing"),
    Variable("tags", _S, "tags"),
    Variable("product_types_bought", _S, "product_type_counts", _KEYS),
    Variable("vendors_bought", _S, "vendor_counts", _KEYS),
    Variable("products_bought", _S, "product_counts", _KEYS),
    Variable("product_type_order_counts", _C, "product_type_counts"),
    Variable("vendor_order_counts", _C, "vendor_counts"),
    Variable("product_order_counts", _C, "product_counts"),
)


def rule_data() -> dict[str, Any]:
    """Every variable, action and operator type, for editors (export_rule_data plus our types)."""
    data: dict[str, Any] = export_rule_data(SegmentVariables, SegmentActions)
    for operator_type in OPERATOR_TYPES:
        data["variable_type_operators"][operator_type.name] = operator_type.get_all_operators()
    return data
