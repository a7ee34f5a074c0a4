"""The JSON the stand-in hands out: GraphQL views of its objects and webhook bodies, in the
shapes Shopify uses (GraphQL camelCase with GIDs; REST-style snake_case in customers/update)."""

from typing import Any

from services.shopify_standin.state import BulkOperation, Customer, Subscription, iso

GID = "gid://shopify/{kind}/{id}"


def gid(kind: str, numeric_id: int) -> str:
    """A Shopify global id, e.g. gid://shopify/Customer/42."""
    return GID.format(kind=kind, id=numeric_id)


def parse_gid(value: str, kind: str) -> int | None:
    """The numeric id of `gid://shopify/<kind>/<n>`, or None when `value` is not one."""
    prefix = f"gid://shopify/{kind}/"
    if not value.startswith(prefix):
        return None
    tail = value[len(prefix) :].split("?", 1)[0]
    return int(tail) if tail.isascii() and tail.isdigit() else None


def customer_view(customer: Customer) -> dict[str, Any]:
    """The Customer object as GraphQL resolves it."""
    consent = {
        "marketingState": customer.marketing_state,
        "marketingOptInLevel": customer.opt_in_level,
        "consentUpdatedAt": iso(customer.consent_updated_at),
    }
    return {
        "__typename": "Customer",
        "id": gid("Customer", customer.id),
        "legacyResourceId": str(customer.id),
        "email": customer.email,
        "firstName": customer.first_name,
        "lastName": customer.last_name,
        "tags": list(customer.tags),
        "emailMarketingConsent": consent if customer.email else None,
        "createdAt": iso(customer.created_at),
        "updatedAt": iso(customer.updated_at),
    }


def subscription_view(subscription: Subscription) -> dict[str, Any]:
    """The WebhookSubscription object as GraphQL resolves it."""
    return {
        "__typename": "WebhookSubscription",
        "id": gid("WebhookSubscription", subscription.id),
        "legacyResourceId": str(subscription.id),
        "topic": subscription.topic,
        "uri": subscription.uri,
        "callbackUrl": subscription.uri,
        "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": subscription.uri},
        "format": subscription.format,
        "includeFields": list(subscription.include_fields),
        "filter": subscription.filter,
        "apiVersion": {
            "handle": subscription.api_version,
            "displayName": subscription.api_version,
            "supported": True,
        },
        "createdAt": iso(subscription.created_at),
        "updatedAt": iso(subscription.created_at),
    }


def bulk_view(operation: BulkOperation) -> dict[str, Any]:
    """The BulkOperation object as GraphQL resolves it (counts are UnsignedInt64 strings)."""
    return {
        "__typename": "BulkOperation",
        "id": gid("BulkOperation", operation.id),
        "status": operation.status,
        "type": "MUTATION",
        "errorCode": operation.error_code,
        "createdAt": iso(operation.created_at),
        "completedAt": iso(operation.completed_at),
        "objectCount": str(operation.object_count),
        "rootObjectCount": str(operation.object_count),
        "fileSize": None if operation.file_size is None else str(operation.file_size),
        "url": operation.url,
        "partialDataUrl": None,
        "query": operation.query,
    }


def customers_update_body(customer: Customer) -> dict[str, Any]:
    """customers/update: the whole customer, REST-style, `tags` one comma-separated string."""
    consent = None
    if customer.email:
        consent = {
            "state": customer.marketing_state.lower(),
            "opt_in_level": customer.opt_in_level.lower() if customer.opt_in_level else None,
            "consent_updated_at": iso(customer.consent_updated_at),
        }
    return {
        "id": customer.id,
        "email": customer.email,
        "created_at": iso(customer.created_at),
        "updated_at": iso(customer.updated_at),
        "first_name": customer.first_name,
        "last_name": customer.last_name,
        "state": "enabled" if customer.email else "disabled",
        "tags": ", ".join(customer.tags),
        "currency": "USD",
        "email_marketing_consent": consent,
        "sms_marketing_consent": None,
        "admin_graphql_api_id": gid("Customer", customer.id),
    }


def tags_changed_body(customer_id: int, tags: list[str], occurred_at: str) -> dict[str, Any]:
    """customer.tags_added / customer.tags_removed: only the tags that changed."""
    return {"customerId": gid("Customer", customer_id), "tags": tags, "occurredAt": occurred_at}


def consent_body(customer: Customer) -> dict[str, Any]:
    """customers_email_marketing_consent/update."""
    return {
        "customer_id": customer.id,
        "email_address": customer.email,
        "email_marketing_consent": {
            "state": customer.marketing_state.lower(),
            "opt_in_level": customer.opt_in_level.lower() if customer.opt_in_level else None,
            "consent_updated_at": iso(customer.consent_updated_at),
        },
    }


def bulk_finish_body(operation: BulkOperation) -> dict[str, Any]:
    """bulk_operations/finish."""
    return {
        "admin_graphql_api_id": gid("BulkOperation", operation.id),
        "completed_at": iso(operation.completed_at),
        "created_at": iso(operation.created_at),
        "error_code": operation.error_code.lower() if operation.error_code else None,
        "status": operation.status.lower(),
        "type": "mutation",
    }
