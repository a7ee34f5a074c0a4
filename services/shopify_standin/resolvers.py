"""The resolvers behind the schema: reads and mutations against the request's shop.

Resolvers are synchronous (everything is in memory), so a document executes without awaiting;
webhook deliveries they cause are queued, never awaited.
"""

import base64
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

import orjson
from graphql import (
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLUnionType,
)

from services.shopify_standin import tags as tag_rules
from services.shopify_standin.bulk import run_bulk_mutation
from services.shopify_standin.consent import consent_problems, parse_datetime
from services.shopify_standin.context import RequestContext
from services.shopify_standin.payloads import (
    bulk_view,
    consent_body,
    customer_view,
    customers_update_body,
    gid,
    parse_gid,
    subscription_view,
    tags_changed_body,
)
from services.shopify_standin.schema import admin_schema
from services.shopify_standin.state import Customer, Shop, Subscription, utc_now

# Shopify refuses any input array longer than this before running the operation.
MAX_INPUT_ARRAY = 250
MAX_PAGE = 250
_NODE_KINDS = ("Customer", "WebhookSubscription", "BulkOperation")

Resolver = Callable[..., Any]
Info = GraphQLResolveInfo[RequestContext]


def _ctx(info: Info) -> RequestContext:
    return info.context


def _user_error(field: list[str] | None, message: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "message": message, **extra}


def _check_input_size(values: list[Any]) -> None:
    if len(values) > MAX_INPUT_ARRAY:
        raise GraphQLError(
            f"The input array size of {len(values)} is greater than the maximum allowed of "
            f"{MAX_INPUT_ARRAY}.",
            extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
        )


def _gid_kind(value: str) -> tuple[str, int]:
    """(kind, numeric id) of a GID; a GraphQLError like Shopify's when it is not one."""
    parts = value.split("/")
    if len(parts) == 5 and value.startswith("gid://shopify/"):
        number = parse_gid(value, parts[3])
        if number is not None:
            return parts[3], number
    raise GraphQLError(f"Invalid global id '{value}'", extensions={"code": "INVALID_ID"})


def _node(shop: Shop, value: str) -> dict[str, Any] | None:
    kind, number = _gid_kind(value)
    if kind == "Customer" and number in shop.customers:
        return customer_view(shop.customers[number])
    if kind == "BulkOperation" and number in shop.bulk_operations:
        return bulk_view(shop.bulk_operations[number])
    if kind == "WebhookSubscription":
        for subscription in shop.subscriptions:
            if subscription.id == number:
                return subscription_view(subscription)
    return None


def resolve_customer(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    kind, _ = _gid_kind(id)
    return _node(_ctx(info).shop, id) if kind == "Customer" else None


def resolve_node(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    return _node(_ctx(info).shop, id)


def resolve_nodes(_root: Any, info: Info, ids: list[str]) -> list[Any]:
    _check_input_size(ids)
    shop = _ctx(info).shop
    return [_node(shop, value) for value in ids]


def _cursor(subscription: Subscription) -> str:
    raw = orjson.dumps({"last_id": subscription.id, "last_value": subscription.id})
    return base64.b64encode(raw).decode()


def _after_id(cursor: str) -> int:
    try:
        return int(orjson.loads(base64.b64decode(cursor))["last_id"])
    except Exception as exc:  # noqa: BLE001 - any undecodable cursor is the caller's error
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor}") from exc


def resolve_webhook_subscriptions(
    _root: Any,
    info: Info,
    first: int | None = None,
    after: str | None = None,
    topics: list[str] | None = None,
    uri: str | None = None,
    callbackUrl: str | None = None,
    format: str | None = None,
) -> dict[str, Any]:
    if first is None:
        raise GraphQLError("you must provide one of first or last")
    if not 0 <= first <= MAX_PAGE:
        raise GraphQLError(f"The page size must be between 0 and {MAX_PAGE}")
    wanted_uri = uri or callbackUrl
    matching = [
        s
        for s in sorted(_ctx(info).shop.subscriptions, key=lambda s: s.id)
        if (not topics or s.topic in topics)
        and (wanted_uri is None or s.uri == wanted_uri)
        and (format is None or s.format == format)
    ]
    if after is not None:
        last = _after_id(after)
        matching = [s for s in matching if s.id > last]
    page = matching[:first]
    edges = [{"cursor": _cursor(s), "node": subscription_view(s)} for s in page]
    return {
        "edges": edges,
        "nodes": [edge["node"] for edge in edges],
        "pageInfo": {
            "hasNextPage": len(matching) > first,
            "hasPreviousPage": after is not None,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def resolve_webhook_subscription(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    kind, _ = _gid_kind(id)
    return _node(_ctx(info).shop, id) if kind == "WebhookSubscription" else None


def resolve_current_bulk_operation(
    _root: Any, info: Info, type: str = "QUERY"
) -> dict[str, Any] | None:
    if type != "MUTATION":
        return None  # the stand-in runs no bulk queries
    operations = _ctx(info).shop.bulk_operations
    return bulk_view(operations[max(operations)]) if operations else None


def resolve_bulk_operation(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
    kind, _ = _gid_kind(id)
    if kind != "BulkOperation":
        raise GraphQLError(f"Invalid id: {id}", extensions={"code": "RESOURCE_NOT_FOUND"})
    return _node(_ctx(info).shop, id)


def resolve_shop(_root: Any, info: Info) -> dict[str, Any]:
    shop = _ctx(info).shop
    name = shop.domain.split(".", 1)[0]
    return {
        "id": gid("Shop", shop.numeric_id),
        "name": name,
        "myshopifyDomain": shop.domain,
        "ianaTimezone": shop.iana_timezone,
    }


def resolve_app_installation(_root: Any, info: Info) -> dict[str, Any]:
    shop = _ctx(info).shop
    return {
        "id": gid("AppInstallation", shop.numeric_id),
        "accessScopes": [{"handle": scope, "description": scope} for scope in shop.scopes],
    }


def _tag_target(ctx: RequestContext, id: str) -> tuple[Customer | None, list[dict[str, Any]]]:
    kind, number = _gid_kind(id)
    shop = ctx.shop
    if kind != "Customer":
        return None, [_user_error(["id"], f"{kind} does not exist")]
    customer = shop.customers.get(number)
    if customer is None and shop.auto_create_customers:
        customer = shop.customers[number] = Customer(id=number)
    if customer is None:
        return None, [_user_error(["id"], "Customer does not exist")]
    return customer, []


def change_tags(ctx: RequestContext, id: str, tags: list[str], adding: bool) -> dict[str, Any]:
    """tagsAdd (adding) or tagsRemove on the context's shop: the payload, echoes queued."""
    _check_input_size(tags)
    customer, errors = _tag_target(ctx, id)
    if customer is None:
        return {"node": None, "userErrors": errors}
    named = tag_rules.split_tags(tags)
    if adding:
        result, changed = tag_rules.add_tags(customer.tags, named)
    else:
        result, changed = tag_rules.remove_tags(customer.tags, named)
    problems = tag_rules.tag_problems(named, result)
    if problems:
        return {"node": None, "userErrors": [_user_error(["tags"], p) for p in problems]}
    if changed:
        customer.tags = result
        customer.updated_at = utc_now()
        _echo_tags(ctx, customer, changed, adding)
    return {"node": customer_view(customer), "userErrors": []}


def _echo_tags(ctx: RequestContext, customer: Customer, changed: list[str], added: bool) -> None:
    """Shopify's echoes of a tag change: customers/update and customer.tags_added|removed."""
    event_id = str(uuid.uuid4())
    occurred_at = utc_now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    dispatcher = ctx.runtime.dispatcher
    dispatcher.emit(ctx.shop, "CUSTOMERS_UPDATE", customers_update_body(customer), event_id)
    topic = "CUSTOMER_TAGS_ADDED" if added else "CUSTOMER_TAGS_REMOVED"
    dispatcher.emit(ctx.shop, topic, tags_changed_body(customer.id, changed, occurred_at), event_id)


def resolve_tags_add(_root: Any, info: Info, id: str, tags: list[str]) -> Any:
    return change_tags(_ctx(info), id, tags, adding=True)


def resolve_tags_remove(_root: Any, info: Info, id: str, tags: list[str]) -> Any:
    return change_tags(_ctx(info), id, tags, adding=False)


def resolve_consent_update(_root: Any, info: Info, input: dict[str, Any]) -> Any:
    ctx = _ctx(info)
    consent = input["emailMarketingConsent"]
    kind, number = _gid_kind(input["customerId"])
    customer = ctx.shop.customers.get(number) if kind == "Customer" else None
    if customer is None:
        error = _user_error(["input", "customerId"], "Customer not found", code="INVALID")
        return {"customer": None, "userErrors": [error]}
    problems = consent_problems(customer.email, consent, utc_now())
    if problems:
        return {"customer": customer_view(customer), "userErrors": problems}
    customer.marketing_state = consent["marketingState"]
    customer.opt_in_level = consent.get("marketingOptInLevel") or customer.opt_in_level
    customer.consent_updated_at = parse_datetime(consent.get("consentUpdatedAt")) or utc_now()
    customer.updated_at = utc_now()
    ctx.runtime.dispatcher.emit(
        ctx.shop, "CUSTOMERS_EMAIL_MARKETING_CONSENT_UPDATE", consent_body(customer)
    )
    return {"customer": customer_view(customer), "userErrors": []}


def resolve_webhook_create(
    _root: Any, info: Info, topic: str, webhookSubscription: dict[str, Any]
) -> Any:
    ctx = _ctx(info)
    given = webhookSubscription
    uri = (given.get("uri") or given.get("callbackUrl") or "").strip()
    where = ["webhookSubscription", "callbackUrl"]
    error = None
    if not uri:
        error = "Address can't be blank"
    elif not uri.startswith(("http://", "https://")):
        error = "Address is invalid"
    elif (given.get("format") or "JSON") != "JSON":
        error = "Format XML is not supported by this stand-in"
    elif any(s.topic == topic and s.uri == uri for s in ctx.shop.subscriptions):
        error = "Address for this topic has already been taken"
    if error is not None:
        return {"webhookSubscription": None, "userErrors": [_user_error(where, error)]}
    subscription = Subscription(
        id=ctx.runtime.state.next_id(),
        topic=topic,
        uri=uri,
        format="JSON",
        api_version=ctx.api_version,
        include_fields=list(given.get("includeFields") or []),
        filter=given.get("filter"),
        created_at=utc_now(),
    )
    ctx.shop.subscriptions.append(subscription)
    return {"webhookSubscription": subscription_view(subscription), "userErrors": []}


def resolve_webhook_delete(_root: Any, info: Info, id: str) -> Any:
    shop = _ctx(info).shop
    kind, number = _gid_kind(id)
    for subscription in shop.subscriptions:
        if kind == "WebhookSubscription" and subscription.id == number:
            shop.subscriptions.remove(subscription)
            return {"deletedWebhookSubscriptionId": id, "userErrors": []}
    error = _user_error(["id"], "Webhook subscription does not exist")
    return {"deletedWebhookSubscriptionId": None, "userErrors": [error]}


def resolve_staged_uploads(_root: Any, info: Info, input: list[Any]) -> Any:
    _check_input_size(input)
    ctx = _ctx(info)
    targets = []
    for index, wanted in enumerate(input):
        where = ["input", str(index)]
        if wanted["resource"] != "BULK_MUTATION_VARIABLES" or wanted["httpMethod"] != "POST":
            message = "This stand-in stages only BULK_MUTATION_VARIABLES uploads by POST"
            return {"stagedTargets": None, "userErrors": [_user_error(where, message)]}
        filename = wanted["filename"].rsplit("/", 1)[-1] or "upload.jsonl"
        key = f"tmp/{ctx.shop.numeric_id}/bulk/{uuid.uuid4()}/{filename}"
        ctx.runtime.state.add_upload(key, ctx.shop.domain, filename, ctx.runtime.sign_upload(key))
        url = f"{ctx.base_url}/staged-uploads"
        parameters = [
            ("Content-Type", wanted["mimeType"]),
            ("success_action_status", "201"),
            ("acl", "private"),
            ("key", key),
            ("signature", ctx.runtime.sign_upload(key)),
        ]
        targets.append(
            {
                "url": url,
                "resourceUrl": url,
                "parameters": [{"name": n, "value": v} for n, v in parameters],
            }
        )
    return {"stagedTargets": targets, "userErrors": []}


def resolve_bulk_run(
    _root: Any,
    info: Info,
    mutation: str,
    stagedUploadPath: str,
    clientIdentifier: str | None = None,
) -> Any:
    return run_bulk_mutation(_ctx(info), info.schema, mutation, stagedUploadPath)


RESOLVERS: dict[str, dict[str, Resolver]] = {
    "QueryRoot": {
        "customer": resolve_customer,
        "node": resolve_node,
        "nodes": resolve_nodes,
        "webhookSubscription": resolve_webhook_subscription,
        "webhookSubscriptions": resolve_webhook_subscriptions,
        "currentBulkOperation": resolve_current_bulk_operation,
        "bulkOperation": resolve_bulk_operation,
        "shop": resolve_shop,
        "currentAppInstallation": resolve_app_installation,
    },
    "Mutation": {
        "tagsAdd": resolve_tags_add,
        "tagsRemove": resolve_tags_remove,
        "customerEmailMarketingConsentUpdate": resolve_consent_update,
        "webhookSubscriptionCreate": resolve_webhook_create,
        "webhookSubscriptionDelete": resolve_webhook_delete,
        "stagedUploadsCreate": resolve_staged_uploads,
        "bulkOperationRunMutation": resolve_bulk_run,
    },
}


@cache
def executable_schema() -> GraphQLSchema:
    """The admin schema with the resolvers attached (built once; resolvers read the context)."""
    schema = admin_schema()
    for type_name, fields in RESOLVERS.items():
        root = schema.get_type(type_name)
        if not isinstance(root, GraphQLObjectType):
            raise TypeError(f"{type_name} is not an object type")
        for name, resolver in fields.items():
            root.fields[name].resolve = resolver
    # Every object the resolvers return names its type; reading it is the quick way.
    for abstract in ("Node", "DisplayableError", "WebhookSubscriptionEndpoint"):
        found = schema.get_type(abstract)
        if isinstance(found, GraphQLInterfaceType | GraphQLUnionType):
            found.resolve_type = _typename
    return schema


def _typename(value: Any, _info: Info, _type: Any) -> str | None:
    name = value.get("__typename") if isinstance(value, dict) else None
    return name if isinstance(name, str) else None
