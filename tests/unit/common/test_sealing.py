"""Shop secrets sealed at rest: round trip, rotation, tampering and misplaced rows."""

import pytest

from services.common.sealing import SealingError, new_key_text, parse_keys, seal, unseal

OLD = new_key_text("k1")
NEW = new_key_text("k2")


def test_a_sealed_token_opens_only_for_its_context() -> None:
    keyring = parse_keys(OLD)
    sealed, key_id = seal(keyring, "shpat_secret", "shop:1:admin_token")
    assert b"shpat_secret" not in sealed and key_id == "k1"
    assert unseal(keyring, sealed, key_id, "shop:1:admin_token") == "shpat_secret"
    with pytest.raises(SealingError, match="does not open"):
        unseal(keyring, sealed, key_id, "shop:2:admin_token")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealingError, match="does not open"):
        unseal(keyring, tampered, key_id, "shop:1:admin_token")


def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    sealed, key_id = seal(parse_keys(OLD), "token", "ctx")
    rotated = parse_keys(f"{NEW},{OLD}")
    assert unseal(rotated, sealed, key_id, "ctx") == "token"
    assert seal(rotated, "token", "ctx")[1] == "k2"
    with pytest.raises(SealingError, match="not configured"):
        unseal(parse_keys(NEW), sealed, key_id, "ctx")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "not set"),
        ("k1", "id:base64url-key"),
        ("k1:c2hvcnQ", "not 32 bytes"),
        (f"{OLD},{OLD}", "twice"),
    ],
    # Fixed ids: the keys are random, and parallel workers must collect the same names.
    ids=["unset", "no-key", "short-key", "same-id-twice"],
)
def test_a_bad_key_list_is_refused_with_its_problem(text: str | None, problem: str) -> None:
    with pytest.raises(SealingError, match=problem):
        parse_keys(text)


def test_the_keyring_never_shows_its_keys() -> None:
    keyring = parse_keys(OLD)
    assert OLD.split(":")[1] not in repr(keyring)
