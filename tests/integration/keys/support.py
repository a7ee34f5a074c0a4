"""Serving the three apps over real HTTP with an operator token, and enumerating their routes."""

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import SecretStr
from starlette.routing import Route

from services.common.serve import make_server
from services.common.settings import Settings
from tests.helpers import free_port, start_server

OPERATOR = "sfop_" + "o" * 40
OPERATOR_PREVIOUS = "sfop_" + "p" * 40
UNSUBSCRIBE_KEYS = "k1:" + "s" * 40


def keyed(settings: Settings, **update: Any) -> Settings:
    """The test's settings with the operator token set (and unsubscribe keys for the tagger)."""
    values: dict[str, Any] = {
        "operator_token": SecretStr(OPERATOR),
        "unsubscribe_keys": SecretStr(UNSUBSCRIBE_KEYS),
        **update,
    }
    return settings.model_copy(update=values)


@asynccontextmanager
async def served(app: FastAPI, port: int | None = None) -> AsyncIterator[str]:
    """The app on a free port (or `port`) over real HTTP until the block ends."""
    port = port or free_port()
    server = make_server(app, "127.0.0.1", port)
    task = await start_server(server)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers: its routes and the documented fast paths."""
    found = _walk(app.routes, "")
    for path, item in app.openapi().get("paths", {}).items():
        found |= {(method.upper(), path) for method in item}
    return found


def _walk(routes: Any, prefix: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, APIRoute | Route):
            found |= {(method, prefix + route.path) for method in route.methods or ()}
        elif hasattr(route, "original_router"):
            # FastAPI 0.165 keeps an included router as one entry (its routes inside).
            inner = prefix + route.include_context.prefix
            found |= _walk(route.original_router.routes, inner)
        else:
            raise AssertionError(f"a route of an unknown type: {route!r}")
    return found


@dataclass(frozen=True)
class Access:
    """Who may call a route: `scheme` says how a key is presented, `kinds` which ones open it.

    bearer: `Authorization: Bearer`; operator: the operator token as bearer; flow: the
    X-Segflow-Flow-Secret header; hmac: a Shopify signature; public: no key at all.
    """

    scheme: str
    kinds: frozenset[str] = frozenset()


PUBLIC = Access("public")
ADMIN = Access("bearer", frozenset({"admin"}))
READ = Access("bearer", frozenset({"admin", "read"}))
EVENTS = Access("bearer", frozenset({"admin", "events"}))
OPERATOR_ONLY = Access("operator", frozenset({"operator"}))
FLOW = Access("flow", frozenset({"flow"}))
HMAC = Access("hmac", frozenset({"webhook"}))

SHOP_KINDS = ("admin", "read", "events", "flow", "webhook")
ALL_KINDS = (*SHOP_KINDS, "operator")

# Placeholders for path parameters: any value of the right shape (a 404 is not a 401/403).
PATH_VALUES = {
    "customer_id": "1",
    "segment_id": "1",
    "journey_id": "1",
    "token": "not-a-token",
    "domain": "nobody.myshopify.com",
    "kind": "read",
}


def filled(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no placeholder value for a parameter of {path}"
    return path


def expected_refusal(access: Access, kind: str | None) -> int | None:
    """The status a key of `kind` (None: no key) must get, or None when it must get through."""
    if access.scheme == "public":
        return None
    if kind is not None and kind in access.kinds:
        return None
    if kind is None:
        return 401
    if access.scheme == "bearer" and kind in ("admin", "read", "events", "flow"):
        return 403  # a valid key of that shop, of too little power
    if access.scheme == "flow" and kind in ("admin", "read", "events"):
        return 403
    # The operator token is no shop key, a shop key is no operator token, and the webhook
    # secret is no bearer key; an HMAC made with anything but the webhook secret is just wrong.
    return 401


def routes_table_matches(app: FastAPI, table: dict[tuple[str, str], Access]) -> Iterator[str]:
    """The differences between the app's routes and the table (empty when they agree)."""
    actual = routes_of(app)
    for route in sorted(actual - set(table)):
        yield f"route {route} is not in the table of who may call it"
    for route in sorted(set(table) - actual):
        yield f"table entry {route} names no route of the app"
