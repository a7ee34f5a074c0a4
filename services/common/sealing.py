"""Secrets at rest: shop tokens sealed with AES-256-GCM under a key named by its id.

Keys come from SEGFLOW_SEALING_KEYS, `id:base64url-key` pairs separated by commas; the first
seals, every one of them opens, so a key rotates by putting the new one first and keeping the
old one until every row was sealed again. The shop's id and the secret's purpose are bound in
as associated data, so a sealed token copied to another shop's row does not open.
"""

import base64
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class SealingError(Exception):
    """No key, a malformed key list, or a sealed value that does not open."""


@dataclass(frozen=True)
class Keyring:
    """The sealing keys by id; `current` seals."""

    current: str
    keys: dict[str, bytes]

    def __repr__(self) -> str:
        return f"Keyring(current={self.current!r}, ids={sorted(self.keys)!r})"


def parse_keys(text: str | None) -> Keyring:
    """The keyring from `id:base64url-key,...` (32-byte keys); SealingError names the problem."""
    if not text or not text.strip():
        raise SealingError("SEGFLOW_SEALING_KEYS is not set: no key to seal shop secrets with")
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for part in text.split(","):
        key_id, sep, encoded = part.strip().partition(":")
        if not sep or not key_id:
            raise SealingError("SEGFLOW_SEALING_KEYS: each entry is id:base64url-key")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError as exc:
            raise SealingError(f"SEGFLOW_SEALING_KEYS: key {key_id!r} is not base64") from exc
        if len(key) != 32:
            raise SealingError(f"SEGFLOW_SEALING_KEYS: key {key_id!r} is not 32 bytes")
        if key_id in keys:
            raise SealingError(f"SEGFLOW_SEALING_KEYS: key id {key_id!r} appears twice")
        keys[key_id] = key
        order.append(key_id)
    return Keyring(order[0], keys)


def new_key_text(key_id: str) -> str:
    """A fresh `id:key` entry for SEGFLOW_SEALING_KEYS."""
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip('=')}"


def seal(keyring: Keyring, secret: str, context: str) -> tuple[bytes, str]:
    """(sealed bytes, key id) of `secret`, bound to `context` (e.g. "shop:42:admin_token")."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(keyring.keys[keyring.current]).encrypt(nonce, secret.encode(), context.encode())
    return nonce + sealed, keyring.current


def unseal(keyring: Keyring, sealed: bytes, key_id: str, context: str) -> str:
    """The secret; SealingError when its key is gone or it was sealed for another context."""
    key = keyring.keys.get(key_id)
    if key is None:
        raise SealingError(f"the key {key_id!r} that sealed this secret is not configured")
    nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, body, context.encode()).decode()
    except InvalidTag as exc:
        raise SealingError("the sealed secret does not open (tampered or another row's)") from exc
