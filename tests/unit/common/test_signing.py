import inspect

from services.common import signing
from services.common.signing import sign_webhook, verify_webhook

# Computed independently: printf '%s' BODY | openssl dgst -sha256 -hmac SECRET -binary | base64
BODY = b'{"id":820982911946154508,"email":"jon@example.com"}'
SECRET = "shpss_test_secret"
SIGNATURE = "LnwdZPLBbdjkBwPD/lDL1/rYEGby/GHPtL1aAH6Dxjc="


def test_known_vector_signs_and_verifies() -> None:
    assert sign_webhook(BODY, SECRET) == SIGNATURE
    assert verify_webhook(BODY, SECRET, SIGNATURE)


def test_surrounding_whitespace_in_header_is_tolerated() -> None:
    assert verify_webhook(BODY, SECRET, f" {SIGNATURE}\n")


def test_any_changed_byte_is_rejected() -> None:
    for index in range(len(BODY)):
        changed = bytearray(BODY)
        changed[index] ^= 0x01
        assert not verify_webhook(bytes(changed), SECRET, SIGNATURE), index


def test_wrong_secret_missing_or_garbage_header_is_rejected() -> None:
    assert not verify_webhook(BODY, SECRET + "x", SIGNATURE)
    assert not verify_webhook(BODY, SECRET, None)
    assert not verify_webhook(BODY, SECRET, "")
    assert not verify_webhook(BODY, SECRET, "not base64 at all ✓")
    assert not verify_webhook(BODY, SECRET, SIGNATURE[:-2])


def test_compare_is_constant_time() -> None:
    # Timing is not measurable reliably in a test; what can be checked is that the
    # comparison is hmac.compare_digest and not ==.
    source = inspect.getsource(signing.verify_webhook)
    assert "compare_digest" in source
    assert "==" not in source
