"""A body must fit a destructive topic before it may make its change."""

import pytest

from services.ingest.topic_shapes import topic_misfit

# Shopify's own example bodies.
DELETE: dict[str, object] = {
    "id": 706405506930370084,
    "phone": None,
    "addresses": [],
    "tax_exemptions": [],
    "email_marketing_consent": None,
    "sms_marketing_consent": None,
    "admin_graphql_api_id": "gid://shopify/Customer/706405506930370084",
}
UPDATE = {
    "id": 706405506930370084,
    "email": "bob@biller.com",
    "created_at": "2021-12-31T19:00:00-05:00",
    "updated_at": "2021-12-31T19:00:00-05:00",
    "first_name": "Bob",
    "last_name": "Biller",
    "state": "disabled",
    "addresses": [],
}
ORDER = {"id": 820982911946154508, "line_items": [{"id": 1}], "customer": {"id": 7}}
REDACT = {
    "shop_id": 954889,
    "shop_domain": "snowdevil.myshopify.com",
    "customer": {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"},
    "orders_to_redact": [299938, 280263, 220458],
}
DATA_REQUEST = {
    "shop_id": 954889,
    "shop_domain": "snowdevil.myshopify.com",
    "orders_requested": [299938],
    "customer": {"id": 191167, "email": "john@example.com", "phone": "555-625-1199"},
    "data_request": {"id": 9999},
}
SHOP_REDACT = {"shop_id": 954889, "shop_domain": "snowdevil.myshopify.com"}


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        ("customers/delete", DELETE),
        ("customers/delete", {"id": 1}),
        ("customers/redact", REDACT),
        ("customers/redact", {**REDACT, "customer": {"email": "john@example.com"}}),
        ("customers/data_request", DATA_REQUEST),
        ("shop/redact", SHOP_REDACT),
        ("customers/update", UPDATE),  # not a checked topic
    ],
)
def test_shopifys_own_bodies_fit(topic: str, body: dict[str, object]) -> None:
    assert topic_misfit(topic, body) is None


@pytest.mark.parametrize(
    ("topic", "body", "named"),
    [
        ("customers/delete", UPDATE, "email"),
        ("customers/delete", ORDER, "customer, line_items"),
        ("customers/delete", {"id": 1, "addresses": [{"city": "X"}]}, "addresses"),
        ("customers/delete", {"customerId": 1}, "id"),
        ("customers/redact", SHOP_REDACT, "customer"),
        ("customers/redact", UPDATE, "shop_id"),
        ("customers/redact", {**REDACT, "customer": {"id": 1, "first_name": "A"}}, "first_name"),
        ("shop/redact", REDACT, "no customer"),
        ("shop/redact", DATA_REQUEST, "no customer"),
        ("customers/data_request", SHOP_REDACT, "customer"),
        (" Customers/Delete ", UPDATE, "email"),
    ],
)
def test_a_body_of_another_topic_is_refused_naming_why(
    topic: str, body: dict[str, object], named: str
) -> None:
    misfit = topic_misfit(topic, body)
    assert misfit is not None and named in misfit
