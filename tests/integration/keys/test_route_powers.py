"""Every route of every app against every kind of key: a table says who may call each route,
and a route missing from the table fails the test (a new endpoint cannot ship unchecked)."""

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.settings import Settings
from services.common.shops import Kind, ShopCredentials
from services.common.signing import sign_webhook
from services.tagger.service import TaggerHealth
from tests.integration.keys.support import (
    ADMIN,
    ALL_KINDS,
    EVENTS,
    FLOW,
    HMAC,
    OPERATOR,
    OPERATOR_ONLY,
    PUBLIC,
    READ,
    Access,
    expected_refusal,
    filled,
    keyed,
    routes_table_matches,
    served,
)

DOCS = {
    (method, path): PUBLIC
    for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
    for method in ("GET", "HEAD")
}
HEALTH = {("GET", path): PUBLIC for path in ("/healthz", "/readyz", "/metrics")}

API_TABLE: dict[tuple[str, str], Access] = {
    **DOCS,
    **HEALTH,
    ("GET", "/v1/customers/{customer_id}/segments"): READ,
    ("GET", "/v1/customers/{customer_id}"): ADMIN,
    ("GET", "/v1/customers/{customer_id}/export"): ADMIN,
    ("GET", "/v1/privacy/data-requests"): ADMIN,
    ("GET", "/v1/rules/schema"): ADMIN,
    ("GET", "/v1/segments"): ADMIN,
    ("POST", "/v1/segments"): ADMIN,
    ("GET", "/v1/segments/{segment_id}"): ADMIN,
    ("PUT", "/v1/segments/{segment_id}"): ADMIN,
    ("DELETE", "/v1/segments/{segment_id}"): ADMIN,
    ("POST", "/v1/segments/preview"): ADMIN,
    ("GET", "/v1/segments/{segment_id}/customers"): ADMIN,
    ("POST", "/v1/admin/shops"): OPERATOR_ONLY,
    ("GET", "/v1/admin/shops"): OPERATOR_ONLY,
    ("POST", "/v1/admin/shops/{domain}/credentials/{kind}/rotate"): OPERATOR_ONLY,
}
INGEST_TABLE: dict[tuple[str, str], Access] = {
    **DOCS,
    **HEALTH,
    ("POST", "/webhooks/shopify"): HMAC,
    ("POST", "/webhooks/flow"): FLOW,
    ("POST", "/v1/events"): EVENTS,
    ("POST", "/v1/events/batch"): EVENTS,
}
TAGGER_TABLE: dict[tuple[str, str], Access] = {
    **DOCS,
    **HEALTH,
    # The one-click link authenticates itself (a signed token in the path).
    ("GET", "/unsubscribe/{token}"): PUBLIC,
    ("POST", "/unsubscribe/{token}"): PUBLIC,
    ("GET", "/v1/tags/pending"): ADMIN,
    ("GET", "/v1/tags/parked"): ADMIN,
    ("GET", "/v1/customers/{customer_id}/tags"): ADMIN,
    ("GET", "/v1/customers/{customer_id}/enrolments"): ADMIN,
    ("GET", "/v1/journeys"): ADMIN,
    ("POST", "/v1/journeys"): ADMIN,
    ("GET", "/v1/journeys/{journey_id}"): ADMIN,
    ("PUT", "/v1/journeys/{journey_id}"): ADMIN,
    ("DELETE", "/v1/journeys/{journey_id}"): ADMIN,
    ("GET", "/v1/journeys/{journey_id}/stats"): ADMIN,
}
# The segmenter process's own port: liveness, readiness and metrics, no OpenAPI or docs.
SEGMENTER_TABLE: dict[tuple[str, str], Access] = dict(HEALTH)


def api_app(settings: Settings) -> FastAPI:
    from services.api.app import create_app

    return create_app(settings)


def ingest_app(settings: Settings) -> FastAPI:
    from services.ingest.app import create_app

    return create_app(settings)


def tagger_app(settings: Settings) -> FastAPI:
    from services.tagger.app import create_app

    return create_app(settings, TaggerHealth(), CollectorRegistry())


def segmenter_app(settings: Settings) -> FastAPI:
    from services.segmenter.runtime.health import SegmenterHealth, create_health_app

    return create_health_app(SegmenterHealth(), CollectorRegistry())


APPS: dict[str, tuple[Callable[[Settings], FastAPI], dict[tuple[str, str], Access]]] = {
    "api": (api_app, API_TABLE),
    "ingest": (ingest_app, INGEST_TABLE),
    "tagger": (tagger_app, TAGGER_TABLE),
    "segmenter": (segmenter_app, SEGMENTER_TABLE),
}


def secret_of(shop: ShopCredentials, kind: str) -> str:
    return OPERATOR if kind == "operator" else shop.of(Kind(kind))


def request_parts(
    access: Access, shop: ShopCredentials, kind: str | None
) -> tuple[dict[str, str], bytes]:
    """Headers and body presenting a key of `kind` (None: no key) the way the route reads it."""
    body = b"{}"
    secret = secret_of(shop, kind) if kind is not None else None
    if access.scheme == "hmac":
        headers = {"X-Shopify-Shop-Domain": shop.domain, "Content-Type": "application/json"}
        if secret is not None:
            headers["X-Shopify-Hmac-Sha256"] = sign_webhook(body, secret)
        return headers, body
    if access.scheme == "flow":
        return ({"X-Segflow-Flow-Secret": secret} if secret else {}), body
    return ({"Authorization": f"Bearer {secret}"} if secret else {}), body


@pytest.mark.parametrize("name", sorted(APPS))
async def test_every_route_admits_exactly_the_kinds_of_its_table(
    name: str, settings: Settings, shop: ShopCredentials
) -> None:
    make, table = APPS[name]
    app = make(keyed(settings))
    assert list(routes_table_matches(app, table)) == []
    failures = []
    async with served(app) as url, httpx.AsyncClient(base_url=url) as http:
        for (method, path), access in sorted(table.items()):
            for kind in (None, *ALL_KINDS):
                if access.scheme == "public" and kind is not None:
                    continue
                headers, body = request_parts(access, shop, kind)
                answer = await http.request(method, filled(path), headers=headers, content=body)
                wanted = expected_refusal(access, kind)
                where = f"{method} {path} with {kind or 'no'} key: {answer.status_code}"
                if wanted is None:
                    if answer.status_code in (401, 403):
                        failures.append(f"{where} (should get through) {answer.text}")
                    continue
                if answer.status_code != wanted:
                    failures.append(f"{where}, not {wanted}: {answer.text}")
                    continue
                if method == "HEAD":
                    continue
                error = answer.json()["error"]
                code = "forbidden" if wanted == 403 else "unauthorized"
                if error["code"] != code:
                    failures.append(f"{where} answered code {error['code']}, not {code}")
                if wanted == 403 and not all(k in error["message"] for k in access.kinds):
                    failures.append(f"{where} does not name {sorted(access.kinds)}")
        metrics = (await http.get("/metrics")).text
    assert failures == []
    if name in ("api", "tagger"):
        # API and tagger count refused keys by what was presented (a bounded label).
        outcomes = ["unauthorized", "forbidden_read", "forbidden_events", "forbidden_flow"]
        if name == "api":
            outcomes.append("operator_unauthorized")
        for outcome in outcomes:
            line = f'segflow_auth_refusals_total{{outcome="{outcome}"}}'
            assert line in metrics, line
    if name == "ingest":
        # Refused keys are counted, by the kind presented (a bounded label).
        for endpoint in ("events", "events_batch", "flow"):
            for outcome in ("unauthorized", "forbidden_read", "forbidden_admin"):
                if endpoint != "flow" and outcome == "forbidden_admin":
                    continue
                line = f'segflow_ingest_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}}'
                assert line in metrics, line


async def test_a_new_route_missing_from_the_table_is_caught(settings: Settings) -> None:
    """The enumeration itself: an endpoint added without an entry is reported."""
    app = api_app(keyed(settings))

    @app.get("/v1/unchecked")
    async def unchecked() -> dict[str, str]:
        return {}

    problems = list(routes_table_matches(app, API_TABLE))
    assert problems == ["route ('GET', '/v1/unchecked') is not in the table of who may call it"]
