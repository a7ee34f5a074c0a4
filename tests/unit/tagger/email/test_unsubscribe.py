"""Unsubscribe tokens: round trip, tampering, wrong keys, rotation, constant-time comparison."""

import hmac
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tagger.email.unsubscribe import (
    InvalidTokenError,
    KeyRing,
    TokenClaims,
    issue_token,
    unsubscribe_url,
    verify_token,
)

OLD = KeyRing.parse("k1:" + "a" * 40)
ROTATED = KeyRing.parse("k2:" + "b" * 40 + ",k1:" + "a" * 40)
SHOP_ID = 12
CUSTOMER_ID = 820982911946154508  # above 2**53, as Shopify's ids are


def test_a_token_round_trips_and_names_nothing_personal() -> None:
    token = issue_token(OLD, SHOP_ID, CUSTOMER_ID)
    assert verify_token(OLD, token) == TokenClaims(SHOP_ID, CUSTOMER_ID, "unsubscribe", "k1")
    assert token.startswith(f"1.k1.{SHOP_ID}.{CUSTOMER_ID}.unsubscribe.")
    assert "@" not in token
    # URL-safe as it is: nothing to percent-encode in a path segment.
    allowed = set(string.ascii_letters + string.digits + "-_.")
    assert set(token) <= allowed


def test_the_same_inputs_give_the_same_token() -> None:
    assert issue_token(OLD, SHOP_ID, CUSTOMER_ID) == issue_token(OLD, SHOP_ID, CUSTOMER_ID)
    assert issue_token(OLD, SHOP_ID, CUSTOMER_ID) != issue_token(OLD, SHOP_ID, CUSTOMER_ID + 1)


def test_a_changed_token_is_refused() -> None:
    token = issue_token(OLD, SHOP_ID, CUSTOMER_ID)
    for changed in (
        token.replace(f".{CUSTOMER_ID}.", f".{CUSTOMER_ID + 1}."),  # another customer
        token.replace(f"1.k1.{SHOP_ID}.", f"1.k1.{SHOP_ID + 1}."),  # another shop
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # the signature
        token.replace("1.k1.", "2.k1.", 1),  # the version
        token + "x",
        token[:-2],
        "",
    ):
        assert changed != token
        with pytest.raises(InvalidTokenError):
            verify_token(OLD, changed)
            raise AssertionError(f"accepted: {changed}")


def test_a_token_for_another_purpose_is_refused() -> None:
    token = issue_token(OLD, SHOP_ID, CUSTOMER_ID, purpose="preferences")
    assert verify_token(OLD, token, purpose="preferences").purpose == "preferences"
    with pytest.raises(InvalidTokenError, match="not 'unsubscribe'"):
        verify_token(OLD, token)


def test_a_token_signed_with_another_secret_under_the_same_key_id_is_refused() -> None:
    forger = KeyRing.parse("k1:" + "z" * 40)
    with pytest.raises(InvalidTokenError, match="signature"):
        verify_token(OLD, issue_token(forger, SHOP_ID, CUSTOMER_ID))


def test_rotation_the_newest_key_signs_and_old_tokens_still_verify() -> None:
    old_token = issue_token(OLD, SHOP_ID, CUSTOMER_ID)
    new_token = issue_token(ROTATED, SHOP_ID, CUSTOMER_ID)
    assert new_token.startswith("1.k2.")
    assert verify_token(ROTATED, old_token).key_id == "k1"
    assert verify_token(ROTATED, new_token).key_id == "k2"
    # Once k1 is dropped, its tokens stop working; the old ring never knew k2.
    retired = KeyRing.parse("k2:" + "b" * 40)
    with pytest.raises(InvalidTokenError, match="no longer configured"):
        verify_token(retired, old_token)
    with pytest.raises(InvalidTokenError, match="no longer configured"):
        verify_token(OLD, new_token)


def test_the_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    # unsubscribe.py calls hmac.compare_digest through the module, so this sees its calls.
    monkeypatch.setattr(hmac, "compare_digest", spy)
    token = issue_token(OLD, SHOP_ID, CUSTOMER_ID)
    verify_token(OLD, token)
    assert calls and calls[0][1] == token.rsplit(".", 1)[1].encode()


def test_weak_or_malformed_keys_are_refused() -> None:
    for text, problem in (
        ("k1:short", "shorter than 32"),
        ("k1" + "a" * 40, "key_id:secret"),
        ("k1:" + "a" * 40 + ",k1:" + "b" * 40, "must differ"),
        ("bad id:" + "a" * 40, "key id"),
    ):
        with pytest.raises(ValueError, match=problem):
            KeyRing.parse(text)


def test_the_secret_is_not_in_the_key_ring_repr() -> None:
    assert "a" * 40 not in repr(OLD)


def test_ids_must_be_positive_64_bit() -> None:
    with pytest.raises(ValueError, match="shop_id"):
        issue_token(OLD, 0, CUSTOMER_ID)
    with pytest.raises(ValueError, match="customer_id"):
        issue_token(OLD, SHOP_ID, 2**63)


def test_the_unsubscribe_url_puts_the_token_in_the_path() -> None:
    token = issue_token(OLD, SHOP_ID, CUSTOMER_ID)
    assert unsubscribe_url("https://t.example/", token) == f"https://t.example/unsubscribe/{token}"


@settings(max_examples=200, derandomize=True)
@given(
    shop_id=st.integers(1, 2**63 - 1),
    customer_id=st.integers(1, 2**63 - 1),
    position=st.integers(0, 200),
    replacement=st.sampled_from(string.ascii_letters + string.digits + "-_."),
)
def test_no_single_character_change_is_accepted(
    shop_id: int, customer_id: int, position: int, replacement: str
) -> None:
    token = issue_token(OLD, shop_id, customer_id)
    index = position % len(token)
    if token[index] == replacement:
        return
    forged = token[:index] + replacement + token[index + 1 :]
    try:
        claims = verify_token(OLD, forged)
    except InvalidTokenError:
        return
    # Only a change that leaves the signed fields as they were could pass, and none does.
    raise AssertionError(f"forged token accepted: {forged} -> {claims}")


def test_random_tokens_are_refused() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "-_"
    for _ in range(200):
        signature = "".join(rng.choice(alphabet) for _ in range(43))
        with pytest.raises(InvalidTokenError):
            verify_token(OLD, f"1.k1.{SHOP_ID}.{CUSTOMER_ID}.unsubscribe.{signature}")
