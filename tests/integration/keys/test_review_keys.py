"""Review: a request without the power to call a route is refused for its key before its
body is read (the tagger's journey writes parsed it first and answered 400), and every app
segflow serves is in the route table (the segmenter's health app was not)."""

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

import services
from services.api.app import create_app as create_api
from services.common import privacy
from services.common.settings import Settings
from services.common.shops import Kind, ShopCredentials, ShopDirectory, rotate_credential
from services.tagger.app import create_app
from services.tagger.service import TaggerHealth
from tests.integration.keys.support import keyed, served
from tests.integration.keys.test_route_powers import APPS

VIP = {"all": [{"name": "total_spent", "operator": "greater_than", "value": 1000}]}
UNREADABLE = {
    "not-json": b"not json",
    "deep-json": b"[" * 100_000 + b"]" * 100_000,
    "invalid-utf8": b'{"handle": "\xff"}',
}


@pytest.mark.parametrize("body", sorted(UNREADABLE))
async def test_review_keys_a_journey_write_without_the_power_is_refused_before_its_body(
    settings: Settings, shop: ShopCredentials, body: str
) -> None:
    app = create_app(keyed(settings), TaggerHealth(), CollectorRegistry())
    keys = {None: 401, "sfadmin_unknown": 401, shop.read_key: 403, shop.events_key: 403}
    failures = []
    async with served(app) as url, httpx.AsyncClient(base_url=url) as http:
        for method, path in (("POST", "/v1/journeys"), ("PUT", "/v1/journeys/1")):
            for key, status in keys.items():
                headers = {"Content-Type": "application/json"}
                if key is not None:
                    headers["Authorization"] = f"Bearer {key}"
                answer = await http.request(method, path, content=UNREADABLE[body], headers=headers)
                if answer.status_code != status:
                    failures.append(f"{method} {path} {key}: {answer.status_code} {answer.text}")
        # With the admin token the body is read and refused, as before.
        admin = {"Authorization": f"Bearer {shop.api_token}"}
        refused = await http.post("/v1/journeys", content=UNREADABLE[body], headers=admin)
    assert failures == []
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_request"


# Apps of services/ the route table need not cover, each with its reason.
NOT_SEGFLOWS = {
    "services/shopify_standin/app.py": "stands in for Shopify's Admin API in development and tests",
}
_APP_MADE = re.compile(r"\b(?:FastAPI|FastPathApp|Starlette)\(")


def test_review_keys_every_app_segflow_serves_is_in_the_route_table() -> None:
    """An app made anywhere in services/ has its routes in test_route_powers' table (the
    segmenter's health app had none: a route added there shipped unchecked)."""
    root = Path(services.__file__).parent
    made = {
        path.relative_to(root.parent).as_posix()
        for path in root.rglob("*.py")
        if path.name != "fastpath.py" and _APP_MADE.search(path.read_text())
    }
    covered = set()
    settings = keyed(Settings())
    for make, _ in APPS.values():
        for route in make(settings).routes:
            if isinstance(route, APIRoute):
                module = sys.modules[route.endpoint.__module__]
                covered.add(Path(str(module.__file__)).relative_to(root.parent).as_posix())
    assert sorted(made - covered - set(NOT_SEGFLOWS)) == []


async def test_review_keys_rotating_twice_within_the_grace_never_lengthens_an_older_one(
    db: asyncpg.Connection, pool: asyncpg.Pool, shop: ShopCredentials
) -> None:
    """An attack that held: rotations in each other's grace (keys and the webhook secret)."""
    t0 = datetime.now(UTC)
    clock = [t0]
    shops = ShopDirectory(pool, 0.0, clock=lambda: clock[0])
    grace = timedelta(seconds=60)
    k1 = await rotate_credential(db, shop.domain, Kind.ADMIN, grace=grace, now=t0)
    k2 = await rotate_credential(
        db, shop.domain, Kind.ADMIN, grace=grace, now=t0 + timedelta(seconds=10)
    )
    # A third with a long grace lengthens neither older grace.
    later = t0 + timedelta(seconds=20)
    k3 = await rotate_credential(db, shop.domain, Kind.ADMIN, grace=timedelta(hours=1), now=later)
    w1 = await rotate_credential(
        db, shop.domain, Kind.WEBHOOK, grace=grace, secret="w1" * 8, now=t0
    )
    await rotate_credential(
        db, shop.domain, Kind.WEBHOOK, grace=grace, secret="w2" * 8, now=t0 + timedelta(seconds=10)
    )

    async def live() -> list[bool]:
        tokens = (shop.api_token, k1.secret, k2.secret, k3.secret)
        return [await shops.by_token(token) is not None for token in tokens]

    async def webhook_secrets() -> tuple[str, ...]:
        found = await shops.webhook_secrets(shop.domain)
        assert found is not None
        return found.secrets

    clock[0] = t0 + timedelta(seconds=59)
    assert await live() == [True, True, True, True]
    # The current first, then those in their grace, soonest to stop first.
    assert await webhook_secrets() == ("w2" * 8, shop.webhook_secret, w1.secret)
    clock[0] = t0 + timedelta(seconds=61)
    assert await live() == [False, True, True, True]
    assert await webhook_secrets() == ("w2" * 8, w1.secret)
    clock[0] = t0 + timedelta(seconds=81)
    # The second rotation's key has the third rotation's hour (it was current then).
    assert await live() == [False, False, True, True]
    assert await webhook_secrets() == ("w2" * 8,)


async def test_review_keys_a_cached_key_of_an_erased_shop_writes_nothing_and_gets_401(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    """A key looked up before its shop's erasure works up to the cache TTL on; a write then
    found no shop to insert under and answered 500 (a foreign key violation)."""
    api = create_api(keyed(settings, shop_cache_ttl_seconds=300))
    tagger = create_app(
        keyed(settings, shop_cache_ttl_seconds=300), TaggerHealth(), CollectorRegistry()
    )
    auth = {"Authorization": f"Bearer {shop.api_token}"}
    segment = {"handle": "vip", "name": "VIP", "conditions": VIP}
    journey = {
        "handle": "thanks",
        "name": "Thank you",
        "trigger": {"segment": "vip"},
        "steps": [{"key": "thanks", "timing": {"after": "PT2H"}, "template": "welcome.hello"}],
    }
    async with (
        served(api) as api_url,
        served(tagger) as tagger_url,
        httpx.AsyncClient(base_url=api_url, headers=auth) as to_api,
        httpx.AsyncClient(base_url=tagger_url, headers=auth) as to_tagger,
    ):
        # Both processes remember the key.
        assert (await to_api.get("/v1/segments")).status_code == 200
        assert (await to_tagger.get("/v1/journeys")).status_code == 200
        async with db.transaction():
            await privacy.delete_shop(db, shop.domain, shop.shop_id, datetime.now(UTC))
        for answer in (
            await to_api.post("/v1/segments", json=segment),
            await to_tagger.post("/v1/journeys", json=journey),
        ):
            assert answer.status_code == 401, answer.text
            assert answer.json()["error"]["code"] == "unauthorized"
    assert await db.fetchval("SELECT count(*) FROM segments") == 0
