"""Review: signed bodies of other topics that fitted a destructive topic (a replay under
another X-Shopify-Topic), and Shopify's own destructive bodies, which still fit."""

import pytest

from services.ingest.topic_shapes import topic_misfit
from tests.unit.ingest.test_topic_shapes import DATA_REQUEST, DELETE, REDACT, SHOP_REDACT

# customers_marketing_consent/update (SMS): the customer's id under `id`, as in a delete.
SMS_CONSENT = {
    "id": 706405506930370084,
    "phone": "+16135551111",
    "sms_marketing_consent": {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-12-01T10:00:00Z",
        "consent_collected_from": "OTHER",
    },
}


@pytest.mark.parametrize(
    ("topic", "body", "named"),
    [
        pytest.param("customers/delete", SMS_CONSENT, "phone", id="sms-consent-as-delete"),
        pytest.param(
            "customers/delete",
            {"id": 1, "sms_marketing_consent": {"state": "unsubscribed"}},
            "sms_marketing_consent",
            id="consent-without-phone-as-delete",
        ),
        pytest.param(
            "customers/delete",
            {"id": 1, "admin_graphql_api_id": "gid://shopify/Order/1"},
            "gid://shopify/Customer/1",
            id="another-resources-delete",
        ),
        pytest.param("customers/redact", DATA_REQUEST, "data_request", id="data-request-as-redact"),
        pytest.param(
            "customers/data_request", REDACT, "orders_to_redact", id="redact-as-data-request"
        ),
    ],
)
def test_review_topic_shapes_another_topics_body_does_not_fit_a_destructive_one(
    topic: str, body: dict[str, object], named: str
) -> None:
    misfit = topic_misfit(topic, body)
    assert misfit is not None and named in misfit


def test_review_topic_shapes_shopifys_own_bodies_still_fit() -> None:
    assert topic_misfit("customers/delete", DELETE) is None
    assert topic_misfit("customers/redact", REDACT) is None
    assert topic_misfit("customers/data_request", DATA_REQUEST) is None


@pytest.mark.parametrize(
    ("topic", "body"),
    [
        ("customers/redact", REDACT),
        ("customers/data_request", DATA_REQUEST),
        ("shop/redact", SHOP_REDACT),
    ],
)
def test_review_topic_shapes_a_privacy_body_must_name_the_shop_it_is_sent_for(
    topic: str, body: dict[str, object]
) -> None:
    misfit = topic_misfit(topic, body, "other.myshopify.com")
    assert misfit is not None and "other.myshopify.com" in misfit
    assert topic_misfit(topic, body, "snowdevil.myshopify.com") is None
