"""Built-in templates: valid, well named, and meaning what DOMAIN.md says at their edges."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.segmenter.domain.facts import LIFECYCLE_STAGES, RFM_SEGMENTS, CustomerFacts
from services.segmenter.domain.rules.compile_py import compile_conditions
from services.segmenter.domain.rules.templates import builtin_templates
from services.segmenter.domain.rules.validate import validate_actions, validate_conditions

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
D = Decimal
TEMPLATES = {t["handle"]: t for t in builtin_templates()}


def test_every_template_is_valid_and_well_formed() -> None:
    handles = [t["handle"] for t in builtin_templates()]
    assert len(handles) == len(set(handles))
    for template in builtin_templates():
        assert set(template) == {"handle", "name", "description", "conditions", "actions"}
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", template["handle"])
        assert template["name"] and template["description"]
        validate_conditions(template["conditions"])
        validate_actions(template["actions"])


def test_templates_cover_every_stage_month_and_rfm_group() -> None:
    for stage in LIFECYCLE_STAGES:
        assert f"lifecycle-{stage.replace('_', '-')}" in TEMPLATES
    for segment in RFM_SEGMENTS:
        assert f"rfm-{segment.replace('_', '-')}" in TEMPLATES
    birthdays = [h for h in TEMPLATES if h.startswith("birthday-")]
    assert len(birthdays) == 12 and "birthday-december" in birthdays


def test_templates_are_fresh_copies() -> None:
    first = builtin_templates()
    first[0]["conditions"]["all"].clear()
    assert builtin_templates()[0]["conditions"]["all"]


@pytest.mark.parametrize(
    ("handle", "actions"),
    [
        ("vip", [("add_tag", "tag", "VIP"), ("enroll_journey", "journey", "vip-care")]),
        (
            "churn-risk",
            [("add_tag", "tag", "churn-risk"), ("enroll_journey", "journey", "win-back")],
        ),
        ("new-customer", [("enroll_journey", "journey", "welcome")]),
    ],
)
def test_actions_of_the_templates_that_act(
    handle: str, actions: list[tuple[str, str, str]]
) -> None:
    got = [(a["name"], *next(iter(a["params"].items()))) for a in TEMPLATES[handle]["actions"]]
    assert got == actions


def member(handle: str, **fields: Any) -> bool:
    facts = CustomerFacts(shop_id=1, customer_id=1, **fields)
    return compile_conditions(TEMPLATES[handle]["conditions"])(facts, NOW)


@pytest.mark.parametrize(
    ("handle", "fields", "expected"),
    [
        ("new-customer", {"registered_at": NOW - 30 * DAY + US}, True),
        ("new-customer", {"registered_at": NOW - 30 * DAY}, False),
        ("new-customer", {}, False),
        ("mid-term-customer", {"registered_at": NOW - 30 * DAY}, True),
        ("mid-term-customer", {"registered_at": NOW - 365 * DAY + US}, True),
        ("mid-term-customer", {"registered_at": NOW - 365 * DAY}, False),
        ("long-standing-customer", {"registered_at": NOW - 365 * DAY}, True),
        ("long-standing-customer", {"registered_at": NOW - 364 * DAY}, False),
        ("high-frequency", {"orders_30d": 4}, True),
        ("high-frequency", {"orders_30d": 3}, False),
        ("medium-frequency", {"orders_30d": 1}, True),
        ("medium-frequency", {"orders_30d": 3}, False),
        ("low-frequency", {"orders_count": 5, "orders_90d": 1}, True),
        ("low-frequency", {"orders_count": 5, "orders_90d": 2}, False),
        ("low-frequency", {"orders_count": 0}, False),
        ("high-value", {"average_order_value": D("200.01")}, True),
        ("high-value", {"average_order_value": D("200")}, False),
        ("medium-value", {"average_order_value": D("50")}, True),
        ("medium-value", {"average_order_value": D("200")}, True),
        ("medium-value", {"average_order_value": D("49.99")}, False),
        ("price-sensitive", {"orders_count": 2, "average_order_value": D("49.99")}, True),
        ("price-sensitive", {"orders_count": 2, "average_order_value": D("50")}, False),
        ("price-sensitive", {}, False),
        ("vip", {"total_spent": D("1000.01")}, True),
        ("vip", {"total_spent": D("1000")}, False),
        ("churn-risk", {"last_order_at": NOW - 91 * DAY}, True),
        ("churn-risk", {"last_order_at": NOW - 91 * DAY + US}, False),
        ("churn-risk", {}, False),
        ("churned", {"last_order_at": NOW - 181 * DAY}, True),
        ("churned", {"last_order_at": NOW - 180 * DAY}, False),
        ("first-purchase", {"orders_count": 1}, True),
        ("first-purchase", {"orders_count": 2}, False),
        ("repeat-customer", {"orders_count": 2}, True),
        ("big-order", {"largest_order_value": D("500.01")}, True),
        ("big-order", {"largest_order_value": D("500")}, False),
        ("lifecycle-at-risk", {"lifecycle_stage": "at_risk"}, True),
        ("lifecycle-potential", {}, True),
        ("product-preference", {"top_product_type": "Hats"}, True),
        ("product-preference", {}, False),
        ("prefers-apparel", {"top_product_type": "apparel"}, True),
        ("prefers-apparel", {"top_product_type": "Hats"}, False),
        ("country-us", {"country_code": "us"}, True),
        ("birthday-december", {"birthday_month": 12}, True),
        ("birthday-december", {"birthday_month": 11}, False),
        ("birthday-december", {}, False),
        ("rfm-cant-lose", {"rfm_segment": "cant_lose"}, True),
        ("email-engaged", {"accepts_email_marketing": True, "emails_clicked": 1}, True),
        ("email-engaged", {"accepts_email_marketing": True, "emails_opened": 3}, True),
        ("email-engaged", {"accepts_email_marketing": True, "emails_opened": 2}, False),
        ("email-engaged", {"accepts_email_marketing": False, "emails_clicked": 5}, False),
        ("reviewer", {"reviews_written": 1}, True),
        ("referrer", {"referrals": 0}, False),
        ("abandoned-cart", {"abandoned_checkouts": 1}, True),
    ],
)
def test_template_membership_at_its_edges(
    handle: str, fields: dict[str, Any], expected: bool
) -> None:
    assert member(handle, **fields) is expected
