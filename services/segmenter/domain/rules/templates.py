"""The built-in segment templates named in DOMAIN.md, in the stored rule format."""

from functools import cache
from typing import Any

from services.segmenter.domain.facts import LIFECYCLE_STAGES, RFM_SEGMENTS

Template = dict[str, Any]

# Not calendar.month_name: that follows the process locale, and handles must not.
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def builtin_templates() -> list[Template]:
    """Every built-in template as {handle, name, description, conditions, actions}; a fresh copy
    on each call, so callers may change what they get."""
    return [
        *_tenure(),
        *_frequency(),
        *_value(),
        *_recency(),
        *_orders(),
        *_lifecycle(),
        *_preference(),
        *_geography(),
        *_birthdays(),
        *_rfm(),
        *_engagement(),
    ]


@cache
def builtin_handles() -> frozenset[str]:
    """The built-in segments' handles (the segment label metrics keep; others read `other`)."""
    return frozenset(template["handle"] for template in builtin_templates())


def _when(name: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"name": name, "operator": operator, "value": value}


def _template(
    handle: str,
    name: str,
    description: str,
    conditions: list[dict[str, Any]],
    actions: list[dict[str, Any]] | None = None,
) -> Template:
    return {
        "handle": handle,
        "name": name,
        "description": description,
        "conditions": {"all": conditions},
        "actions": actions or [],
    }


def _add_tag(tag: str) -> dict[str, Any]:
    return {"name": "add_tag", "params": {"tag": tag}}


def _journey(journey: str) -> dict[str, Any]:
    return {"name": "enroll_journey", "params": {"journey": journey}}


def _tenure() -> list[Template]:
    registered = "days_since_registration"
    return [
        _template(
            "new-customer",
            "New customer",
            "Registered within the last 30 days.",
            [_when(registered, "less_than", 30)],
            [_journey("welcome")],
        ),
        _template(
            "mid-term-customer",
            "Mid-term customer",
            "Registered between 30 days and a year ago.",
            [_when(registered, "between", [30, 364])],
        ),
        _template(
            "long-standing-customer",
            "Long-standing customer",
            "Registered a year or more ago.",
            [_when(registered, "greater_than_or_equal_to", 365)],
        ),
    ]


def _frequency() -> list[Template]:
    return [
        _template(
            "high-frequency",
            "High frequency",
            "More than 3 orders in the last 30 days.",
            [_when("orders_last_30_days", "greater_than", 3)],
        ),
        _template(
            "medium-frequency",
            "Medium frequency",
            "1 or 2 orders in the last 30 days.",
            [_when("orders_last_30_days", "between", [1, 2])],
        ),
        _template(
            "low-frequency",
            "Low frequency",
            "Has ordered, but at most once in the last 90 days.",
            [
                _when("orders_count", "greater_than_or_equal_to", 1),
                _when("orders_last_90_days", "less_than_or_equal_to", 1),
            ],
        ),
    ]


def _value() -> list[Template]:
    aov = "average_order_value"
    return [
        _template(
            "high-value",
            "High value",
            "Average order value above 200.",
            [_when(aov, "greater_than", 200)],
        ),
        _template(
            "medium-value",
            "Medium value",
            "Average order value from 50 to 200.",
            [_when(aov, "between", [50, 200])],
        ),
        _template(
            "price-sensitive",
            "Price sensitive",
            "Has ordered, with an average order value below 50.",
            [_when("orders_count", "greater_than_or_equal_to", 1), _when(aov, "less_than", 50)],
        ),
        _template(
            "vip",
            "VIP",
            "Spent more than 1000 in total (net of refunds).",
            [_when("total_spent", "greater_than", 1000)],
            [_add_tag("VIP"), _journey("vip-care")],
        ),
    ]


def _recency() -> list[Template]:
    return [
        _template(
            "churn-risk",
            "Churn risk",
            "No order for more than 90 days.",
            [_when("days_since_last_order", "greater_than", 90)],
            [_add_tag("churn-risk"), _journey("win-back")],
        ),
        _template(
            "churned",
            "Churned",
            "No order for more than 180 days.",
            [_when("days_since_last_order", "greater_than", 180)],
        ),
    ]


def _orders() -> list[Template]:
    return [
        _template(
            "first-purchase",
            "First purchase",
            "Exactly one order so far.",
            [_when("orders_count", "equal_to", 1)],
        ),
        _template(
            "repeat-customer",
            "Repeat customer",
            "Two or more orders.",
            [_when("orders_count", "greater_than_or_equal_to", 2)],
        ),
        _template(
            "big-order",
            "Big order",
            "Placed an order above 500.",
            [_when("largest_order_value", "greater_than", 500)],
        ),
    ]


def _lifecycle() -> list[Template]:
    return [
        _template(
            f"lifecycle-{stage.replace('_', '-')}",
            f"Lifecycle: {stage.replace('_', ' ')}",
            f"Customers whose lifecycle stage is {stage.replace('_', ' ')}.",
            [_when("lifecycle_stage", "equal_to", stage)],
        )
        for stage in LIFECYCLE_STAGES
    ]


def _preference() -> list[Template]:
    return [
        _template(
            "product-preference",
            "Has a product preference",
            "Has a most-bought product type; clone it per type (see prefers-apparel).",
            [_when("top_product_type", "non_empty")],
        ),
        _template(
            "prefers-apparel",
            "Prefers Apparel",
            "Apparel is the most-bought product type.",
            [_when("top_product_type", "equal_to_case_insensitive", "Apparel")],
        ),
    ]


def _geography() -> list[Template]:
    return [
        _template(
            "country-us",
            "United States",
            "Customers in the United States; clone it per country or city.",
            [_when("country_code", "equal_to_case_insensitive", "US")],
        ),
        _template(
            "country-cn",
            "China",
            "Customers in China.",
            [_when("country_code", "equal_to_case_insensitive", "CN")],
        ),
    ]


def _birthdays() -> list[Template]:
    return [
        _template(
            f"birthday-{month.lower()}",
            f"Birthday in {month}",
            f"Customers whose birthday is in {month}.",
            [_when("birthday_month", "equal_to", number)],
        )
        for number, month in enumerate(MONTHS, start=1)
    ]


def _rfm() -> list[Template]:
    return [
        _template(
            f"rfm-{segment.replace('_', '-')}",
            f"RFM: {segment.replace('_', ' ')}",
            f"Customers in the RFM group {segment.replace('_', ' ')}.",
            [_when("rfm_segment", "equal_to", segment)],
        )
        for segment in RFM_SEGMENTS
    ]


def _engagement() -> list[Template]:
    return [
        _template(
            "email-engaged",
            "Email engaged",
            "Accepts email marketing and clicked an email or opened at least 3.",
            [
                _when("accepts_email_marketing", "is_true"),
                {
                    "any": [
                        _when("emails_clicked", "greater_than_or_equal_to", 1),
                        _when("emails_opened", "greater_than_or_equal_to", 3),
                    ]
                },
            ],
        ),
        _template(
            "reviewer",
            "Reviewer",
            "Wrote at least one review.",
            [_when("reviews_written", "greater_than_or_equal_to", 1)],
        ),
        _template(
            "referrer",
            "Referrer",
            "Referred at least one customer.",
            [_when("referrals", "greater_than_or_equal_to", 1)],
        ),
        _template(
            "abandoned-cart",
            "Abandoned cart",
            "Abandoned at least one checkout.",
            [_when("abandoned_checkouts", "greater_than_or_equal_to", 1)],
        ),
    ]
