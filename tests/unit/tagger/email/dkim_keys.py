"""RSA keys for DKIM tests, generated in pure Python from a seed: no binary, no network, and the
same key on every run."""

import base64
import random
from dataclasses import dataclass

_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # OID 1.2.840.113549.1.1.1


@dataclass(frozen=True)
class DkimKey:
    private_pem: bytes
    dns_record: bytes  # the TXT record: v=DKIM1; k=rsa; p=...


def _is_probable_prime(n: int, rng: random.Random) -> bool:
    if n < 2:
        return False
    for small in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % small == 0:
            return n == small
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(32):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, rng: random.Random) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _is_probable_prime(candidate, rng):
            return candidate


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _length(len(body)) + body


def _integer(n: int) -> bytes:
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")  # a leading zero keeps it positive
    return _tlv(0x02, body)


def _sequence(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def generate_key(seed: int, bits: int = 1024) -> DkimKey:
    """An RSA key pair as a PKCS#1 PEM private key and the DKIM DNS record of its public key."""
    rng = random.Random(seed)
    e = 65537
    while True:
        p, q = _prime(bits // 2, rng), _prime(bits // 2, rng)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e and (p * q).bit_length() == bits:
            break
    n, d = p * q, pow(e, -1, phi)
    private = _sequence(
        _integer(0),
        _integer(n),
        _integer(e),
        _integer(d),
        _integer(p),
        _integer(q),
        _integer(d % (p - 1)),
        _integer(d % (q - 1)),
        _integer(pow(q, -1, p)),
    )
    encoded = base64.b64encode(private)
    lines = b"\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64))
    pem = b"-----BEGIN RSA PRIVATE KEY-----\n" + lines + b"\n-----END RSA PRIVATE KEY-----\n"
    public = _sequence(
        _sequence(_tlv(0x06, _RSA_ENCRYPTION), _tlv(0x05, b"")),
        _tlv(0x03, b"\x00" + _sequence(_integer(n), _integer(e))),
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    return DkimKey(pem, record)
