"""Shops and their credentials by power: create, rotate with a grace period, look up.

Each shop holds one current secret per kind (`shop_credentials.expires_at IS NULL`) and any
number of rotated ones still in their grace (`expires_at` in the future). Tokens are stored
as SHA-256 hashes; the webhook secret in clear, because verifying an HMAC needs it. A
token's prefix (sfadmin_, sfread_, …) is for people; its power comes from its stored row.
"""

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import asyncpg
from prometheus_client import Counter

_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$")
# The longest DNS name: a header naming anything longer (or misshapen) names no shop.
MAX_DOMAIN_LENGTH = 253

# How long a rotated secret keeps working unless the rotation says otherwise.
DEFAULT_GRACE = timedelta(hours=24)
# The longest grace a rotation may give: a forgotten old key should not live on for months.
MAX_GRACE = timedelta(days=30)


class Kind(StrEnum):
    """What a credential may do (README "Keys and who holds them")."""

    ADMIN = "admin"
    READ = "read"
    EVENTS = "events"
    FLOW = "flow"
    WEBHOOK = "webhook"


# The prefix of newly issued tokens, for people reading them; legacy admin tokens are sfapi_.
PREFIXES = {
    Kind.ADMIN: "sfadmin_",
    Kind.READ: "sfread_",
    Kind.EVENTS: "sfevt_",
    Kind.FLOW: "sfflow_",
}

INSERT_SHOP = """
INSERT INTO shops (domain) VALUES ($1)
ON CONFLICT (domain) DO NOTHING
RETURNING id
"""
SHOP_ID = "SELECT id FROM shops WHERE domain = $1"
INSERT_CREDENTIAL = """
INSERT INTO shop_credentials (shop_id, kind, token_hash, webhook_secret, created_at)
VALUES ($1, $2, $3, $4, $5)
"""
DROP_CREDENTIALS = "DELETE FROM shop_credentials WHERE shop_id = $1"
# Rotation: the current secret and every one still in grace expire by `$3` at the latest;
# a grace never lengthens an earlier rotation's.
END_GRACE = """
UPDATE shop_credentials
SET expires_at = CASE WHEN expires_at IS NULL THEN $3 ELSE least(expires_at, $3) END
WHERE shop_id = $1 AND kind = $2 AND (expires_at IS NULL OR expires_at > $4)
RETURNING expires_at
"""
# Early revocation of keys already rotated out (the current one stays current).
END_GRACE_OF_PREVIOUS = """
UPDATE shop_credentials SET expires_at = least(expires_at, $3)
WHERE shop_id = $1 AND kind = $2 AND expires_at > $4
RETURNING expires_at
"""
# Secrets past their grace are dropped at the kind's next rotation: nothing opens with them,
# and an old webhook secret should not stay in clear for good.
PURGE_EXPIRED = """
DELETE FROM shop_credentials WHERE shop_id = $1 AND kind = $2 AND expires_at <= $3
"""
LOCK_SHOP = "SELECT id FROM shops WHERE id = $1 FOR UPDATE"
CREDENTIAL_BY_TOKEN = """
SELECT s.id, s.domain, c.kind, c.expires_at
FROM shop_credentials c JOIN shops s ON s.id = c.shop_id
WHERE c.token_hash = $1 AND (c.expires_at IS NULL OR c.expires_at > $2)
"""
WEBHOOK_SECRETS_BY_DOMAIN = """
SELECT s.id, s.domain, c.webhook_secret, c.expires_at
FROM shops s JOIN shop_credentials c ON c.shop_id = s.id AND c.kind = 'webhook'
WHERE s.domain = $1 AND (c.expires_at IS NULL OR c.expires_at > $2)
ORDER BY c.expires_at NULLS FIRST
"""
LIST_SHOPS = "SELECT id, domain, created_at FROM shops ORDER BY domain"
LIST_CREDENTIALS = """
SELECT shop_id, kind, created_at, expires_at FROM shop_credentials
WHERE shop_id = ANY($1::bigint[]) AND (expires_at IS NULL OR expires_at > $2)
ORDER BY shop_id, kind, expires_at NULLS FIRST, created_at
"""

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ShopExistsError(Exception):
    """A shop with that domain is already registered."""


class UnknownShopError(Exception):
    """No shop is registered under that domain."""


@dataclass(frozen=True)
class Shop:
    id: int
    domain: str


@dataclass(frozen=True)
class ShopKey:
    """A presented token that opened: its shop, its kind and when it stops (None: current)."""

    shop: Shop
    kind: Kind
    expires_at: datetime | None


@dataclass(frozen=True)
class WebhookSecrets:
    """A shop and the webhook secrets an HMAC may be made with now (current first)."""

    shop: Shop
    secrets: tuple[str, ...]

    def __repr__(self) -> str:
        # Never let a secret reach a log line through repr.
        return f"WebhookSecrets(shop={self.shop!r}, count={len(self.secrets)})"


@dataclass(frozen=True)
class ShopCredentials:
    """Every credential of a newly registered shop; shown once, only token hashes are kept.

    `api_token` is the admin token (its historic name: SEGFLOW_DEMO_API_TOKEN, the bench).
    """

    shop_id: int
    domain: str
    webhook_secret: str
    api_token: str
    flow_secret: str
    read_key: str
    events_key: str

    @property
    def admin_token(self) -> str:
        return self.api_token

    def of(self, kind: Kind) -> str:
        """The secret of one kind."""
        return {
            Kind.ADMIN: self.api_token,
            Kind.READ: self.read_key,
            Kind.EVENTS: self.events_key,
            Kind.FLOW: self.flow_secret,
            Kind.WEBHOOK: self.webhook_secret,
        }[kind]

    def __repr__(self) -> str:
        return f"ShopCredentials(shop_id={self.shop_id}, domain={self.domain!r})"


@dataclass(frozen=True)
class Rotated:
    """A rotation's outcome: the new current secret (shown once) and when the old ones stop."""

    shop_id: int
    domain: str
    kind: Kind
    secret: str
    previous_expire_at: datetime | None

    def __repr__(self) -> str:
        return f"Rotated(domain={self.domain!r}, kind={self.kind.value!r})"


@dataclass(frozen=True)
class CredentialInfo:
    """One live credential as listed: never its secret."""

    kind: Kind
    created_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class ShopInfo:
    id: int
    domain: str
    created_at: datetime
    credentials: tuple[CredentialInfo, ...]


def normalize_domain(domain: str) -> str:
    """Lower-case and check a shop domain such as `example.myshopify.com`."""
    value = domain.strip().lower()
    if not _DOMAIN.match(value):
        raise ValueError(f"not a shop domain: {domain!r}")
    return value


def hash_token(token: str) -> bytes:
    """SHA-256 of a bearer token or Flow secret, as stored."""
    return hashlib.sha256(token.encode()).digest()


def new_secret(kind: Kind) -> str:
    """A fresh random secret of this kind (256 bits)."""
    if kind is Kind.WEBHOOK:
        return secrets.token_hex(32)
    return PREFIXES[kind] + secrets.token_urlsafe(32)


async def _insert(
    conn: asyncpg.Connection, shop_id: int, kind: Kind, secret: str, now: datetime
) -> None:
    if kind is Kind.WEBHOOK:
        await conn.execute(INSERT_CREDENTIAL, shop_id, kind.value, None, secret, now)
    else:
        await conn.execute(INSERT_CREDENTIAL, shop_id, kind.value, hash_token(secret), None, now)


async def create_shop(
    conn: asyncpg.Connection,
    domain: str,
    *,
    webhook_secret: str | None = None,
    api_token: str | None = None,
    flow_secret: str | None = None,
    read_key: str | None = None,
    events_key: str | None = None,
    replace: bool = False,
    now: datetime | None = None,
) -> ShopCredentials:
    """Register a shop with one credential of each kind (given ones or fresh ones).

    With replace, an existing shop's credentials are all replaced at once, with no grace:
    for `segflow dev`'s demo shop and tests; shops in service rotate (`rotate_credential`).
    """
    domain = normalize_domain(domain)
    moment = now or utc_now()
    given = {
        Kind.ADMIN: api_token,
        Kind.READ: read_key,
        Kind.EVENTS: events_key,
        Kind.FLOW: flow_secret,
        Kind.WEBHOOK: webhook_secret,
    }
    chosen = {kind: value or new_secret(kind) for kind, value in given.items()}
    async with conn.transaction():
        shop_id = await conn.fetchval(INSERT_SHOP, domain)
        if shop_id is None:
            if not replace:
                raise ShopExistsError(domain)
            shop_id = await conn.fetchval(SHOP_ID, domain)
            await conn.execute(DROP_CREDENTIALS, shop_id)
        for kind, secret in chosen.items():
            await _insert(conn, shop_id, kind, secret, moment)
    return ShopCredentials(
        shop_id,
        domain,
        webhook_secret=chosen[Kind.WEBHOOK],
        api_token=chosen[Kind.ADMIN],
        flow_secret=chosen[Kind.FLOW],
        read_key=chosen[Kind.READ],
        events_key=chosen[Kind.EVENTS],
    )


def check_grace(grace: timedelta) -> timedelta:
    """The grace if allowed (0 to MAX_GRACE), else ValueError."""
    if grace < timedelta(0) or grace > MAX_GRACE:
        raise ValueError(f"grace must be between 0 and {int(MAX_GRACE.total_seconds())} seconds")
    return grace


async def rotate_credential(
    conn: asyncpg.Connection,
    domain: str,
    kind: Kind,
    *,
    grace: timedelta = DEFAULT_GRACE,
    secret: str | None = None,
    now: datetime | None = None,
) -> Rotated:
    """Issue a new current secret of one kind; the previous ones work until now + grace.

    A grace of 0 revokes them at once. A given secret is only taken for the webhook kind
    (Shopify's app secret, rotated on Shopify's side); tokens are always generated here.
    """
    check_grace(grace)
    if secret is not None and kind is not Kind.WEBHOOK:
        raise ValueError(f"a {kind.value} key is generated by segflow, never given")
    moment = now or utc_now()
    fresh = secret or new_secret(kind)
    async with conn.transaction():
        shop_id = await conn.fetchval(SHOP_ID, normalize_domain(domain))
        if shop_id is None:
            raise UnknownShopError(domain)
        # One rotation of a shop at a time: two at once would both find "the current" one.
        await conn.execute(LOCK_SHOP, shop_id)
        await conn.execute(PURGE_EXPIRED, shop_id, kind.value, moment)
        expiries = await conn.fetch(END_GRACE, shop_id, kind.value, moment + grace, moment)
        await _insert(conn, shop_id, kind, fresh, moment)
    latest = max((row["expires_at"] for row in expiries), default=None)
    return Rotated(shop_id, normalize_domain(domain), kind, fresh, latest)


async def end_grace(
    conn: asyncpg.Connection, domain: str, kind: Kind, at: datetime, *, now: datetime | None = None
) -> int:
    """Make every non-current secret of one kind stop by `at` (revocation when `at` is now);
    return how many were shortened."""
    moment = now or utc_now()
    shop_id = await conn.fetchval(SHOP_ID, normalize_domain(domain))
    if shop_id is None:
        raise UnknownShopError(domain)
    rows = await conn.fetch(END_GRACE_OF_PREVIOUS, shop_id, kind.value, at, moment)
    return len(rows)


async def list_shops(conn: asyncpg.Connection, *, now: datetime | None = None) -> list[ShopInfo]:
    """Every shop with its live credentials (kinds and times, never secrets)."""
    shops = await conn.fetch(LIST_SHOPS)
    creds = await conn.fetch(LIST_CREDENTIALS, [r["id"] for r in shops], now or utc_now())
    by_shop: dict[int, list[CredentialInfo]] = {}
    for row in creds:
        by_shop.setdefault(row["shop_id"], []).append(
            CredentialInfo(Kind(row["kind"]), row["created_at"], row["expires_at"])
        )
    return [
        ShopInfo(r["id"], r["domain"], r["created_at"], tuple(by_shop.get(r["id"], ())))
        for r in shops
    ]


_CacheKey = tuple[str, str | bytes]


class ShopDirectory:
    """Looks credentials up with a short-lived in-process cache, so hot paths rarely query.

    An entry lives `ttl_seconds` at most, and never past the expiry of a credential in it.
    So a key stops at its expiry when it was looked up in its grace, and at most
    `ttl_seconds` after its expiry (or revocation, or its shop's deletion) when it was
    looked up before: that bound is SEGFLOW_SHOP_CACHE_TTL_SECONDS (README).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        ttl_seconds: float = 10.0,
        *,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        refusals: Counter | None = None,
    ) -> None:
        self._pool = pool
        self._refusals = refusals
        self._ttl = ttl_seconds
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[_CacheKey, tuple[float, datetime | None, object]] = {}

    async def by_token(self, token: str) -> ShopKey | None:
        """The live credential this bearer token (or Flow secret) is, if any."""
        if not token:
            return None
        key: _CacheKey = ("token", hash_token(token))
        hit, value = self._cached(key)
        if hit:
            return value if isinstance(value, ShopKey) else None
        row = await self._pool.fetchrow(CREDENTIAL_BY_TOKEN, key[1], self._clock())
        found = (
            ShopKey(Shop(row["id"], row["domain"]), Kind(row["kind"]), row["expires_at"])
            if row
            else None
        )
        self._store(key, found, found.expires_at if found else None)
        return found

    async def webhook_secrets(self, domain: str) -> WebhookSecrets | None:
        """The shop registered under this domain and its live webhook secrets, if any."""
        name = domain.strip().lower()
        if len(name) > MAX_DOMAIN_LENGTH or not _DOMAIN.match(name):
            # Not sent to the database, nor kept: the header is the sender's, of any size the
            # HTTP server takes (a megabyte passes), and a flood of them would fill the cache.
            return None
        key: _CacheKey = ("domain", name)
        hit, value = self._cached(key)
        if hit:
            return value if isinstance(value, WebhookSecrets) else None
        rows = await self._pool.fetch(WEBHOOK_SECRETS_BY_DOMAIN, key[1], self._clock())
        found = None
        if rows:
            shop = Shop(rows[0]["id"], rows[0]["domain"])
            found = WebhookSecrets(shop, tuple(r["webhook_secret"] for r in rows))
        expiries = [r["expires_at"] for r in rows if r["expires_at"] is not None]
        self._store(key, found, min(expiries, default=None))
        return found

    def refused(self, outcome: str) -> None:
        """Count a request refused for its key (`unauthorized`, `forbidden_<kind>`)."""
        if self._refusals is not None:
            self._refusals.labels(outcome).inc()

    def _cached(self, key: _CacheKey) -> tuple[bool, object]:
        entry = self._cache.get(key)
        if entry is None:
            return False, None
        deadline, expires_at, value = entry
        if self._monotonic() >= deadline or (
            expires_at is not None and self._clock() >= expires_at
        ):
            del self._cache[key]
            return False, None
        return True, value

    def _store(self, key: _CacheKey, value: object, expires_at: datetime | None) -> None:
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (self._monotonic() + self._ttl, expires_at, value)
