"""Review: a request without the power to call a route is refused for its key before its
body is read (the tagger's journey writes parsed it first and answered 400)."""

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from services.tagger.app import create_app
from services.tagger.service import TaggerHealth
from tests.integration.keys.support import keyed, served

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
