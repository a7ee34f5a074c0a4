"""GET /v1/customers/{customer_id}/segments, now a plain ASGI endpoint ahead of FastAPI
(services/api/lookup.py), answers over real HTTP as the FastAPI route it replaced did."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from services.api.app import create_app
from services.common.serve import make_server
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from tests.helpers import free_port, start_server

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[str]:
    """The API alone on its own port (it needs no broker)."""
    settings = Settings(database_url=database_url, api_port=free_port())
    server = make_server(create_app(settings, clock=lambda: NOW), "127.0.0.1", settings.api_port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{settings.api_port}"
    server.should_exit = True
    await task


async def test_a_trailing_slash_redirects_to_the_lookup_like_every_other_route(
    api: str, shop: ShopCredentials, db: asyncpg.Connection
) -> None:
    """FastAPI's router answers a path that differs from a route's only by a trailing slash
    with 307 to the route's path (redirect_slashes). The route is no longer in its router, so
    `/v1/customers/7/segments/` is now a 404 `Not Found`, while `/v1/customers/7/` still
    redirects."""
    await db.execute("INSERT INTO customers (shop_id, customer_id) VALUES ($1, 7)", shop.shop_id)
    headers = {"Authorization": f"Bearer {shop.api_token}"}
    async with httpx.AsyncClient(base_url=api, headers=headers) as http:
        state = await http.get("/v1/customers/7/")
        assert state.status_code == 307
        assert state.headers["location"].endswith("/v1/customers/7")
        segments = await http.get("/v1/customers/7/segments/")
        assert segments.status_code == 307, segments.text
        assert segments.headers["location"].endswith("/v1/customers/7/segments")
        followed = await http.get("/v1/customers/7/segments/", follow_redirects=True)
        assert followed.status_code == 200
        assert followed.json() == {"customer_id": "7", "segments": []}
