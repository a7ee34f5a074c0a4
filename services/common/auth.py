"""Per-shop API authentication: `Authorization: Bearer <api token>` → the Shop it belongs to."""

from typing import Annotated

from fastapi import Depends, Request

from services.common.errors import ApiError
from services.common.ratelimit import enforce_rate_limit
from services.common.shops import Shop, ShopDirectory


async def bearer_shop(request: Request) -> Shop:
    """The shop whose API token is presented; 401 otherwise. Needs `app.state.shops`."""
    shops: ShopDirectory = request.app.state.shops
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    shop = await shops.by_api_token(token.strip()) if scheme.lower() == "bearer" else None
    if shop is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid `Authorization: Bearer <api token>` header is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # After authentication, so the bucket is the shop's (services/common/ratelimit.py).
    enforce_rate_limit(request, shop)
    return shop


ShopDep = Annotated[Shop, Depends(bearer_shop)]
