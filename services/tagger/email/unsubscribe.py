"""Unsubscribe tokens: hard to forge, URL-safe, naming nothing personal. Pure functions.

A token reads `1.<key id>.<shop id>.<customer id>.<purpose>.<signature>`: the format version,
the key that signed it, the shop's and the customer's ids (numbers, no email address or name)
and what it may be used for; the signature is HMAC-SHA256 over all of that under the key,
base64url without padding. Verification recomputes it with the key named and compares in
constant time. Several keys may be configured (SEGFLOW_UNSUBSCRIBE_KEYS, "id:secret,..."):
the first signs, every one verifies, so a key is rotated by putting a new one first and
dropping the old one once mail carrying it no longer matters. Tokens do not expire: a link in
an old email must still unsubscribe (Gmail and Yahoo require it to work, and honoured within
two days).
"""

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field

VERSION = "1"
UNSUBSCRIBE = "unsubscribe"
# Secrets shorter than this are refused: the token is only as hard to forge as its key.
MIN_SECRET_LENGTH = 32
# What the MAC covers besides the token's fields: keys used elsewhere cannot sign tokens.
_CONTEXT = b"segflow-token\x00"
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,16}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_TOKEN = re.compile(
    r"^(?P<version>[0-9]+)\.(?P<key_id>[A-Za-z0-9_-]{1,16})\.(?P<shop_id>[1-9][0-9]{0,18})"
    r"\.(?P<customer_id>[1-9][0-9]{0,18})\.(?P<purpose>[a-z][a-z0-9-]{0,31})"
    r"\.(?P<signature>[A-Za-z0-9_-]{43})$"
)
_MAX_ID = 2**63 - 1  # PostgreSQL bigint


class InvalidTokenError(ValueError):
    """A token that is malformed, signed by no key we hold, tampered with or for another use."""


@dataclass(frozen=True)
class TokenKey:
    key_id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class KeyRing:
    """The configured keys; the first one signs."""

    keys: tuple[TokenKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("at least one unsubscribe key is needed")
        ids = [key.key_id for key in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError(f"unsubscribe key ids must differ: {ids}")
        for key in self.keys:
            if not _KEY_ID.match(key.key_id):
                raise ValueError(f"an unsubscribe key id is 1-16 of [A-Za-z0-9_-]: {key.key_id!r}")
            if len(key.secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"unsubscribe key {key.key_id!r} is shorter than {MIN_SECRET_LENGTH} characters"
                )

    @classmethod
    def parse(cls, text: str) -> "KeyRing":
        """Keys from "id:secret,id2:secret2" (the SEGFLOW_UNSUBSCRIBE_KEYS format)."""
        keys = []
        for item in text.split(","):
            key_id, colon, secret = item.strip().partition(":")
            if not colon:
                raise ValueError("unsubscribe keys are written key_id:secret, comma-separated")
            keys.append(TokenKey(key_id, secret.encode()))
        return cls(tuple(keys))

    @property
    def signing_key(self) -> TokenKey:
        return self.keys[0]

    def find(self, key_id: str) -> TokenKey | None:
        """The key with this id, or None."""
        return next((key for key in self.keys if key.key_id == key_id), None)


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says."""

    shop_id: int
    customer_id: int
    purpose: str
    key_id: str


def _signature(key: TokenKey, payload: str) -> str:
    digest = hmac.new(key.secret, _CONTEXT + payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_token(keys: KeyRing, shop_id: int, customer_id: int, purpose: str = UNSUBSCRIBE) -> str:
    """A token for this customer of this shop, signed with the newest key."""
    for name, value in (("shop_id", shop_id), ("customer_id", customer_id)):
        if not 0 < value <= _MAX_ID:
            raise ValueError(f"{name} must be a positive 64-bit integer, not {value}")
    if not _PURPOSE.match(purpose):
        raise ValueError(f"a token purpose is a short lower-case word, not {purpose!r}")
    key = keys.signing_key
    payload = f"{VERSION}.{key.key_id}.{shop_id}.{customer_id}.{purpose}"
    return f"{payload}.{_signature(key, payload)}"


def verify_token(keys: KeyRing, token: str, purpose: str = UNSUBSCRIBE) -> TokenClaims:
    """The token's claims if it is ours, intact and for `purpose`; else InvalidTokenError."""
    match = _TOKEN.match(token)
    if match is None:
        raise InvalidTokenError("malformed token")
    if match["version"] != VERSION:
        raise InvalidTokenError(f"unknown token version {match['version']}")
    key = keys.find(match["key_id"])
    if key is None:
        raise InvalidTokenError("token signed by a key no longer configured")
    payload = token[: match.start("signature") - 1]
    expected = _signature(key, payload)
    if not hmac.compare_digest(expected.encode(), match["signature"].encode()):
        raise InvalidTokenError("token signature does not match")
    shop_id, customer_id = int(match["shop_id"]), int(match["customer_id"])
    if shop_id > _MAX_ID or customer_id > _MAX_ID:
        raise InvalidTokenError("token ids out of range")
    if match["purpose"] != purpose:
        raise InvalidTokenError(f"token is for {match['purpose']!r}, not {purpose!r}")
    return TokenClaims(shop_id, customer_id, match["purpose"], key.key_id)


def unsubscribe_url(base_url: str, token: str) -> str:
    """The one-click link: GET shows a confirmation, POST (RFC 8058) unsubscribes at once."""
    return f"{base_url.rstrip('/')}/unsubscribe/{token}"
