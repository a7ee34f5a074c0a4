"""Shopify webhook signatures: base64 HMAC-SHA256 of the raw request body."""

import base64
import hashlib
import hmac


def sign_webhook(body: bytes, secret: str) -> str:
    """Return the `X-Shopify-Hmac-Sha256` value Shopify would send for this body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_webhook(body: bytes, secret: str, header_value: str | None) -> bool:
    """True when the header is the body's signature under the secret (constant-time compare)."""
    if not header_value:
        return False
    expected = sign_webhook(body, secret)
    return hmac.compare_digest(expected.encode(), header_value.strip().encode())
