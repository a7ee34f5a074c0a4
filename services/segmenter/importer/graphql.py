"""Admin GraphQL objects (as bulk operations write them) → the REST payloads webhooks carry.

GraphQL uses camelCase, GID ids ("gid://shopify/Order/1"), money as
`totalPriceSet { shopMoney { amount currencyCode } }` and upper-case enums; the REST shape is
what the payload models read. Only the fields segmentation uses are carried over.
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

from services.common.shopify import parse_shopify_id

_GID_TYPE = re.compile(r"gid://shopify/(\w+)/")


def gid_type(value: object) -> str | None:
    """The object type named by a GID ("Order" for gid://shopify/Order/1), else None."""
    if not isinstance(value, str):
        return None
    match = _GID_TYPE.match(value)
    return match.group(1) if match else None


def object_type(node: Mapping[str, Any]) -> str | None:
    """The GraphQL type of a node: from its GID, else from `__typename` when it was selected."""
    found = gid_type(node.get("id"))
    typename = node.get("__typename")
    return found or (typename if isinstance(typename, str) else None)


def _object(node: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = node.get(key)
    return value if isinstance(value, Mapping) else {}


def _nested_id(node: Mapping[str, Any], key: str) -> int | None:
    return parse_shopify_id(_object(node, key).get("id"))


def _lower(value: object) -> str | None:
    return value.lower() if isinstance(value, str) else None


def _money(money: Mapping[str, Any]) -> dict[str, Any] | None:
    if money.get("amount") is None:
        return None
    return {"amount": money["amount"], "currency_code": money.get("currencyCode")}


def money_set(node: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """A `fooSet { shopMoney presentmentMoney }` as the REST `foo_set`."""
    bag = _object(node, key)
    shop = _money(_object(bag, "shopMoney"))
    if shop is None:
        return None
    return {"shop_money": shop, "presentment_money": _money(_object(bag, "presentmentMoney"))}


def shop_amount(node: Mapping[str, Any], key: str) -> Any:
    """The shop-money amount of a `fooSet`, or None."""
    return _object(_object(node, key), "shopMoney").get("amount")


def line_item_payload(node: Mapping[str, Any]) -> dict[str, Any]:
    """A LineItem node as a REST line item (the product id also read through the variant)."""
    variant = _object(node, "variant")
    product_id = _nested_id(node, "product")
    if product_id is None:
        product_id = _nested_id(variant, "product")
    return {
        "id": parse_shopify_id(node.get("id")),
        "product_id": product_id,
        "variant_id": parse_shopify_id(variant.get("id")),
        "title": node.get("title"),
        "name": node.get("name"),
        "sku": node.get("sku"),
        "vendor": node.get("vendor"),
        "quantity": node.get("quantity"),
        "current_quantity": node.get("currentQuantity"),
        "price": shop_amount(node, "originalUnitPriceSet"),
    }


def refund_payload(node: Mapping[str, Any], order_id: int) -> dict[str, Any]:
    """A Refund node; what it gave back becomes one successful refund transaction."""
    refunded = shop_amount(node, "totalRefundedSet")
    transactions = []
    if refunded is not None:
        # In shop money already: said so, so it is never converted again.
        transactions.append(
            {
                "kind": "refund",
                "status": "success",
                "amount": refunded,
                "amount_set": money_set(node, "totalRefundedSet"),
            }
        )
    return {
        "id": parse_shopify_id(node.get("id")),
        "order_id": order_id,
        "created_at": node.get("createdAt"),
        "processed_at": node.get("processedAt") or node.get("createdAt"),
        "transactions": transactions,
    }


def order_payload(
    node: Mapping[str, Any],
    line_items: Sequence[Mapping[str, Any]] = (),
    refunds: Sequence[Mapping[str, Any]] = (),
    customer_id: int | None = None,
) -> dict[str, Any]:
    """An Order node with its line items and refunds (bulk output lists both as child lines).

    `customer_id` is the parent's when the order was listed under a customer.
    """
    order_id = parse_shopify_id(node.get("id"))
    if order_id is None:
        raise ValueError("order without an id")
    owner = _nested_id(node, "customer")
    owner = owner if owner is not None else customer_id
    inline_refunds = node.get("refunds")
    all_refunds = [*refunds, *(inline_refunds if isinstance(inline_refunds, list) else [])]
    return {
        "id": order_id,
        "admin_graphql_api_id": node.get("id"),
        "name": node.get("name"),
        "email": node.get("email"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "processed_at": node.get("processedAt"),
        "cancelled_at": node.get("cancelledAt"),
        "closed_at": node.get("closedAt"),
        "cancel_reason": _lower(node.get("cancelReason")),
        "currency": node.get("currencyCode"),
        "total_price": shop_amount(node, "totalPriceSet"),
        "total_price_set": money_set(node, "totalPriceSet"),
        "current_total_price": shop_amount(node, "currentTotalPriceSet"),
        "current_total_price_set": money_set(node, "currentTotalPriceSet"),
        "subtotal_price": shop_amount(node, "subtotalPriceSet"),
        "test": node.get("test"),
        "tags": node.get("tags"),
        "customer": {"id": owner} if owner is not None else None,
        "line_items": [line_item_payload(item) for item in line_items],
        "refunds": [refund_payload(refund, order_id) for refund in all_refunds],
    }


def _address(node: Mapping[str, Any]) -> dict[str, Any] | None:
    address = node.get("defaultAddress")
    if not isinstance(address, Mapping):
        return None
    return {
        "city": address.get("city"),
        "province": address.get("province"),
        "province_code": address.get("provinceCode"),
        "country": address.get("country"),
        "country_code": address.get("countryCodeV2") or address.get("countryCode"),
        "zip": address.get("zip"),
    }


def _consent(consent: Mapping[str, Any], state_key: str = "marketingState") -> dict[str, Any]:
    return {
        "state": _lower(consent.get(state_key)),
        "opt_in_level": _lower(consent.get("marketingOptInLevel")),
        "consent_updated_at": consent.get("consentUpdatedAt") or consent.get("marketingUpdatedAt"),
    }


def _count(value: object) -> int | None:
    # UnsignedInt64 is serialised as a string ("3").
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"numberOfOrders {value!r} is not a whole number")


def customer_payload(node: Mapping[str, Any]) -> dict[str, Any]:
    """A Customer node; `defaultEmailAddress` (2025-04+) stands in for `email` and its consent."""
    customer_id = parse_shopify_id(node.get("id"))
    if customer_id is None:
        raise ValueError("customer without an id")
    email_address = _object(node, "defaultEmailAddress")
    email_consent = _object(node, "emailMarketingConsent")
    sms_consent = _object(node, "smsMarketingConsent")
    spent = _object(node, "amountSpent") or _object(node, "totalSpentV2")
    last_order = _object(node, "lastOrder")
    payload: dict[str, Any] = {
        "id": customer_id,
        "admin_graphql_api_id": node.get("id"),
        "email": node.get("email") or email_address.get("emailAddress"),
        "first_name": node.get("firstName"),
        "last_name": node.get("lastName"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
        "state": _lower(node.get("state")),
        "tags": node.get("tags"),
        "orders_count": _count(node.get("numberOfOrders", node.get("ordersCount"))),
        "total_spent": spent.get("amount"),
        "last_order_at": last_order.get("processedAt") or last_order.get("createdAt"),
        "accepts_marketing": node.get("acceptsMarketing"),
        "default_address": _address(node),
    }
    if email_consent:
        payload["email_marketing_consent"] = _consent(email_consent)
    elif email_address.get("marketingState") is not None:
        payload["email_marketing_consent"] = _consent(email_address)
    if sms_consent:
        payload["sms_marketing_consent"] = _consent(sms_consent)
    return payload


def product_payload(node: Mapping[str, Any]) -> dict[str, Any]:
    """A Product node: the catalog facts (type, vendor) order lines lack."""
    product_id = parse_shopify_id(node.get("id"))
    if product_id is None:
        raise ValueError("product without an id")
    return {
        "id": product_id,
        "title": node.get("title"),
        "vendor": node.get("vendor"),
        "product_type": node.get("productType"),
        "handle": node.get("handle"),
        "status": _lower(node.get("status")),
        "tags": node.get("tags"),
        "created_at": node.get("createdAt"),
        "updated_at": node.get("updatedAt"),
    }
