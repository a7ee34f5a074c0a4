"""Review: the read key sits on storefronts (anyone can copy it), so a flood with it must not
spend the budget of the shop's admin token."""

import httpx

from services.api.app import create_app
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from tests.integration.keys.support import keyed, served


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_review_limits_a_read_key_flood_leaves_the_admin_tokens_reads_alone(
    settings: Settings, shop: ShopCredentials
) -> None:
    tight = keyed(settings, rate_limit_read_per_second=0.01, rate_limit_read_burst=2)
    async with served(create_app(tight)) as url, httpx.AsyncClient(base_url=url) as http:
        lookups = [
            (await http.get("/v1/customers/1/segments", headers=bearer(shop.read_key))).status_code
            for _ in range(4)
        ]
        # The flood is limited, as before.
        assert lookups == [404, 404, 429, 429]
        # The merchant's own reads still go through: a bucket of the admin token's.
        listed = await http.get("/v1/segments", headers=bearer(shop.api_token))
        assert listed.status_code == 200, listed.text
        looked_up = await http.get("/v1/customers/1/segments", headers=bearer(shop.api_token))
        assert looked_up.status_code == 404
        # And the admin token is limited by its own bucket.
        again = await http.get("/v1/segments", headers=bearer(shop.api_token))
        assert again.status_code == 429
