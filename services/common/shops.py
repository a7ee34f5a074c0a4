"""Shops and their credentials: create, rotate, and look up by domain, API token or Flow secret."""

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import asyncpg

_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$")

UPSERT_SHOP = """
INSERT INTO shops (domain, webhook_secret, api_token_hash, flow_secret_hash)
VALUES ($1, $2, $3, $4)
ON CONFLICT (domain) DO UPDATE
SET webhook_secret = EXCLUDED.webhook_secret,
    api_token_hash = EXCLUDED.api_token_hash,
    flow_secret_hash = EXCLUDED.flow_secret_hash
RETURNING id
"""
INSERT_SHOP = """
INSERT INTO shops (domain, webhook_secret, api_token_hash, flow_secret_hash)
VALUES ($1, $2, $3, $4)
ON CONFLICT (domain) DO NOTHING
RETURNING id
"""
SHOP_BY_DOMAIN = "SELECT id, domain, webhook_secret FROM shops WHERE domain = $1"
SHOP_BY_API_TOKEN = "SELECT id, domain, webhook_secret FROM shops WHERE api_token_hash = $1"
SHOP_BY_FLOW_SECRET = "SELECT id, domain, webhook_secret FROM shops WHERE flow_secret_hash = $1"
LIST_SHOPS = "SELECT id, domain, created_at FROM shops ORDER BY domain"


class ShopExistsError(Exception):
    """A shop with that domain is already registered."""


@dataclass(frozen=True)
class Shop:
    id: int
    domain: str
    webhook_secret: str

    def __repr__(self) -> str:
        # Never let the secret reach a log line through repr.
        return f"Shop(id={self.id}, domain={self.domain!r})"


@dataclass(frozen=True)
class ShopCredentials:
    """What a merchant needs to connect a store; shown once, only hashes of the tokens are kept."""

    shop_id: int
    domain: str
    webhook_secret: str
    api_token: str
    flow_secret: str

    def __repr__(self) -> str:
        return f"ShopCredentials(shop_id={self.shop_id}, domain={self.domain!r})"


def normalize_domain(domain: str) -> str:
    """Lower-case and check a shop domain such as `example.myshopify.com`."""
    value = domain.strip().lower()
    if not _DOMAIN.match(value):
        raise ValueError(f"not a shop domain: {domain!r}")
    return value


def hash_token(token: str) -> bytes:
    """SHA-256 of a bearer token or Flow secret, as stored."""
    return hashlib.sha256(token.encode()).digest()


def _new_credentials(
    webhook_secret: str | None, api_token: str | None, flow_secret: str | None
) -> tuple[str, str, str]:
    return (
        webhook_secret or secrets.token_hex(32),
        api_token or "sfapi_" + secrets.token_urlsafe(32),
        flow_secret or "sfflow_" + secrets.token_urlsafe(32),
    )


async def create_shop(
    conn: asyncpg.Connection,
    domain: str,
    *,
    webhook_secret: str | None = None,
    api_token: str | None = None,
    flow_secret: str | None = None,
    replace: bool = False,
) -> ShopCredentials:
    """Register a shop (or, with replace, rotate an existing shop's credentials)."""
    domain = normalize_domain(domain)
    webhook_secret, api_token, flow_secret = _new_credentials(
        webhook_secret, api_token, flow_secret
    )
    query = UPSERT_SHOP if replace else INSERT_SHOP
    shop_id = await conn.fetchval(
        query, domain, webhook_secret, hash_token(api_token), hash_token(flow_secret)
    )
    if shop_id is None:
        raise ShopExistsError(domain)
    return ShopCredentials(shop_id, domain, webhook_secret, api_token, flow_secret)


class ShopDirectory:
    """Looks shops up with a short-lived in-process cache, so the ingest hot path rarely queries."""

    def __init__(self, pool: asyncpg.Pool, ttl_seconds: float = 10.0) -> None:
        self._pool = pool
        self._ttl = ttl_seconds
        self._cache: dict[tuple[str, str | bytes], tuple[float, Shop | None]] = {}

    async def by_domain(self, domain: str) -> Shop | None:
        """The shop registered under this domain, if any."""
        return await self._lookup(SHOP_BY_DOMAIN, domain.strip().lower())

    async def by_api_token(self, token: str) -> Shop | None:
        """The shop this API bearer token belongs to, if any."""
        return await self._lookup(SHOP_BY_API_TOKEN, hash_token(token))

    async def by_flow_secret(self, secret: str) -> Shop | None:
        """The shop this Flow shared secret belongs to, if any."""
        return await self._lookup(SHOP_BY_FLOW_SECRET, hash_token(secret))

    async def _lookup(self, query: str, key: str | bytes) -> Shop | None:
        now = time.monotonic()
        cached = self._cache.get((query, key))
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._pool.fetchrow(query, key)
        shop = Shop(row["id"], row["domain"], row["webhook_secret"]) if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(query, key)] = (now + self._ttl, shop)
        return shop
