"""DKIM: a signature that verifies (dkimpy, with its DNS lookup answered locally), covers both
unsubscribe headers, and breaks when a covered header or the body is changed."""

import re
from datetime import UTC, datetime
from pathlib import Path

import dkim as dkimpy
import pytest

from services.common.settings import Settings
from services.tagger.email.compose import compose_email, message_bytes, message_id_for
from services.tagger.email.dkim import DkimSigner
from services.tagger.email.templates import EmailContext, EmailTemplates
from tests.unit.tagger.email.dkim_keys import DkimKey, generate_key

URL = "https://tagger.example.com/unsubscribe/1.k1.12.34.unsubscribe.x"


@pytest.fixture(scope="module")
def key() -> DkimKey:
    return generate_key(seed=8058)


@pytest.fixture(scope="module")
def signer(key: DkimKey) -> DkimSigner:
    return DkimSigner("example.com", "segflow", key.private_pem)


def _raw(from_address: str = "hello@mail.example.com") -> bytes:
    rendered = EmailTemplates().render(
        "welcome/1", EmailContext(shop_name="Shop", unsubscribe_url=URL, first_name="Ada")
    )
    message = compose_email(
        rendered,
        from_address=from_address,
        from_name="Shop",
        to_address="ada@example.org",
        message_id=message_id_for(1, 2, 0, "mail.example.com"),
        unsubscribe_url=URL,
        date=datetime(2026, 12, 2, tzinfo=UTC),
    )
    return message_bytes(message)


def _verify(raw: bytes, key: DkimKey) -> bool:
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        return key.dns_record if name == b"segflow._domainkey.example.com." else None

    result: bool = dkimpy.verify(raw, dnsfunc=dns)
    assert asked == [b"segflow._domainkey.example.com."]
    return result


def _signed_headers(raw: bytes) -> list[str]:
    header = raw.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = re.sub(r"\r\n[ \t]+", " ", header)
    signature = next(line for line in unfolded.split("\r\n") if line.startswith("DKIM-Signature:"))
    h = re.search(r"\bh=([^;]+)", signature)
    assert h is not None
    return [name.strip().lower() for name in h.group(1).split(":")]


def test_a_signed_message_verifies(key: DkimKey, signer: DkimSigner) -> None:
    raw = _raw()
    signed = signer.sign(raw)
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(raw)
    assert _verify(signed, key)


def test_the_signature_covers_both_unsubscribe_headers(signer: DkimSigner) -> None:
    names = _signed_headers(signer.sign(_raw()))
    for required in ("from", "to", "subject", "date", "message-id"):
        assert required in names
    assert names.count("list-unsubscribe") == 2  # once, and once more against additions
    assert names.count("list-unsubscribe-post") == 2


def test_changing_a_covered_part_breaks_the_signature(key: DkimKey, signer: DkimSigner) -> None:
    signed = signer.sign(_raw())
    for original, forged in [
        (f"List-Unsubscribe: <{URL}>".encode(), b"List-Unsubscribe: <https://evil.example/u>"),
        (
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks",
        ),
        (b"Subject: Welcome to Shop", b"Subject: Welcome to Sh0p"),
        (b"To: ada@example.org", b"To: eve@example.org"),
        (b"Hi Ada,", b"Hi Eve,"),  # the body
    ]:
        assert original in signed
        assert not _verify(signed.replace(original, forged, 1), key), f"{forged!r} verified"


def test_adding_a_second_unsubscribe_header_breaks_the_signature(
    key: DkimKey, signer: DkimSigner
) -> None:
    signed = signer.sign(_raw())
    head, body = signed.split(b"\r\n\r\n", 1)
    added = head + b"\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n" + body
    assert not _verify(added, key)


def test_relaxed_canonicalisation_survives_refolding(key: DkimKey, signer: DkimSigner) -> None:
    signed = signer.sign(_raw())
    refolded = signed.replace(b"Subject: Welcome to Shop", b"Subject: Welcome\r\n  to   Shop")
    assert _verify(refolded, key)


def test_a_from_domain_outside_the_dkim_domain_is_refused(signer: DkimSigner) -> None:
    with pytest.raises(ValueError, match="not under the DKIM domain"):
        signer.sign(_raw(from_address="hello@other.example.net"))
    with pytest.raises(ValueError, match="not under the DKIM domain"):
        signer.sign(_raw(from_address="hello@notexample.com"))


def test_a_bad_key_is_refused_when_configured() -> None:
    with pytest.raises(ValueError, match="not an RSA private key"):
        DkimSigner("example.com", "segflow", b"not a key")


def test_the_signer_comes_from_settings_or_is_none(tmp_path: Path, key: DkimKey) -> None:
    assert DkimSigner.from_settings(Settings()) is None
    path = tmp_path / "dkim.pem"
    path.write_bytes(key.private_pem)
    configured = Settings(
        dkim_domain="Example.com", dkim_selector="segflow", dkim_private_key_path=path
    )
    signer = DkimSigner.from_settings(configured)
    assert signer is not None and signer.domain == "example.com"
    assert "PRIVATE" not in repr(signer)
