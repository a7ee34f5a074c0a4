"""Does a body fit its topic: the check before a body may make a destructive change.

Shopify signs only the body, so a captured delivery can be sent again under another
`X-Shopify-Topic` (a customers/update body as customers/delete would mark the customer
deleted for good). The topics whose effect cannot be undone are checked against the shape of
Shopify's own bodies; other topics' bodies are decoded, and refused, by the segmenter.
"""

from collections.abc import Mapping
from typing import Any

# Fields that only a living customer's (or an order's, product's, checkout's) body carries:
# customers/delete sends the id with empty or null leftovers only. The phone and the consents
# are here because an SMS consent update carries them beside the customer's `id`.
_LIVE_RECORD_FIELDS = frozenset(
    {
        "email",
        "phone",
        "email_marketing_consent",
        "sms_marketing_consent",
        "first_name",
        "last_name",
        "created_at",
        "updated_at",
        "orders_count",
        "total_spent",
        "state",
        "note",
        "verified_email",
        "tags",
        "currency",
        "default_address",
        "line_items",
        "title",
        "customer",
    }
)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _customer_delete_misfit(body: Mapping[str, Any]) -> str | None:
    if body.get("id") is None:
        return "a customers/delete body carries the customer's id"
    present = sorted(k for k in _LIVE_RECORD_FIELDS if not _empty(body.get(k)))
    if present:
        return f"a customers/delete body carries no {', '.join(present)}"
    if not _empty(body.get("addresses")):
        return "a customers/delete body carries no addresses"
    gid = body.get("admin_graphql_api_id")
    if gid is not None and gid != f"gid://shopify/Customer/{body['id']}":
        return f"a customers/delete body names gid://shopify/Customer/{body['id']}"
    return None


# Each privacy topic's own keys, which a body of the other one never carries: a captured
# data request replayed as customers/redact would erase the customer.
_FOREIGN_KEYS = {
    "customers/redact": ("data_request", "orders_requested"),
    "customers/data_request": ("orders_to_redact",),
}


def _redact_misfit(topic: str, body: Mapping[str, Any], shop_domain: str | None) -> str | None:
    if body.get("shop_id") is None or not body.get("shop_domain"):
        return f"a {topic} body carries shop_id and shop_domain"
    named = str(body["shop_domain"]).strip().lower()
    if shop_domain is not None and named != shop_domain:
        return f"this {topic} body is for shop {named}, not {shop_domain}"
    customer = body.get("customer")
    if topic == "shop/redact":
        if customer is not None or "orders_to_redact" in body or "data_request" in body:
            return "a shop/redact body names no customer"
        return None
    foreign = sorted(key for key in _FOREIGN_KEYS[topic] if key in body)
    if foreign:
        return f"a {topic} body carries no {', '.join(foreign)}"
    if not isinstance(customer, Mapping) or (
        customer.get("id") is None and not customer.get("email")
    ):
        return f"a {topic} body names the customer (customer.id or customer.email)"
    extra = sorted(set(customer) - {"id", "email", "phone"})
    if extra:
        return f"a {topic} body's customer carries no {', '.join(extra)}"
    return None


def topic_misfit(topic: str, body: Mapping[str, Any], shop_domain: str | None = None) -> str | None:
    """Why this body cannot be a delivery of this (destructive) topic to `shop_domain` (the
    authenticated shop, lower case), or None if it fits or the topic is not a checked one.

    A privacy body must name that shop: Shopify signs every shop's webhooks with the app's one
    secret, so the signature does not tell shops apart, and one shop's shop/redact sent under
    another's domain would erase the other.
    """
    topic = topic.strip().lower()
    if topic == "customers/delete":
        return _customer_delete_misfit(body)
    if topic in ("customers/redact", "customers/data_request", "shop/redact"):
        return _redact_misfit(topic, body, shop_domain)
    return None


CHECKED_TOPICS = frozenset(
    {"customers/delete", "customers/redact", "customers/data_request", "shop/redact"}
)
