"""The one-click unsubscribe endpoint of journey email (RFC 8058), on the tagger's app.

`POST /unsubscribe/{token}` is what mail clients send for `List-Unsubscribe-Post:
List-Unsubscribe=One-Click`: no cookies, no auth, and no redirect in the answer. It verifies
the token, then in one transaction records the unsubscribe (queued for the write-back to
Shopify, consent_sync.py) and exits the customer's enrolments; it answers 200 only after that
committed, so a 200 always means the state changed (or had changed already).
`GET /unsubscribe/{token}` (the visible link in the body) only shows a page with a button that
makes the same POST: link scanners and previews follow GETs, and must not unsubscribe anyone.
"""

import html
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.common.errors import ApiError
from services.common.settings import Settings
from services.tagger.email.unsubscribe import InvalidTokenError, KeyRing, TokenClaims, verify_token
from services.tagger.journeys_store import unsubscribe

SHOP_EXISTS = "SELECT 1 FROM shops WHERE id = $1"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32em; margin: 3em auto">
<h1>{title}</h1>{body}</body></html>
"""
_FORM = """<p>Stop receiving marketing email from this shop?</p>
<form method="post" action="{action}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>"""


def unsubscribe_router(settings: Settings) -> APIRouter:
    """The two routes; the token keys are read from the settings on first use."""
    router = APIRouter()
    keys: list[KeyRing] = []

    def claims_of(token: str) -> TokenClaims:
        if not keys:
            if settings.unsubscribe_keys is None:
                raise ApiError(503, "unavailable", "unsubscribe links are not configured")
            keys.append(KeyRing.parse(settings.require_unsubscribe_keys()))
        try:
            return verify_token(keys[0], token)
        except InvalidTokenError:
            raise ApiError(404, "not_found", "no such unsubscribe link") from None

    @router.get("/unsubscribe/{token}", response_class=HTMLResponse)
    async def unsubscribe_page(token: str) -> HTMLResponse:
        """A page with the button; nothing changes until it is pressed."""
        claims_of(token)
        action = html.escape(f"/unsubscribe/{token}")
        body = _FORM.format(action=action)
        return HTMLResponse(_PAGE.format(title="Unsubscribe", body=body))

    @router.post("/unsubscribe/{token}", response_class=HTMLResponse)
    async def unsubscribe_one_click(request: Request, token: str) -> HTMLResponse:
        """RFC 8058 one-click (body `List-Unsubscribe=One-Click`), and the page's button."""
        claims = claims_of(token)
        pool = request.app.state.pool
        async with pool.acquire() as conn:
            async with conn.transaction():
                if await conn.fetchval(SHOP_EXISTS, claims.shop_id) is None:
                    raise ApiError(404, "not_found", "no such unsubscribe link")
                await unsubscribe(conn, claims.shop_id, claims.customer_id, datetime.now(UTC))
        body = "<p>You will get no more marketing email from this shop.</p>"
        return HTMLResponse(_PAGE.format(title="You are unsubscribed", body=body))

    return router
