"""segflow dev's unsubscribe keys: the environment's, else one kept in the data dir."""

from pathlib import Path

from pydantic import SecretStr

from services.common.settings import Settings
from services.dev.demo_shopify import dev_unsubscribe_keys
from services.tagger.email.unsubscribe import KeyRing, issue_token, verify_token


def test_a_key_is_made_once_per_data_dir_and_verifies_its_own_tokens(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = dev_unsubscribe_keys(settings)
    assert dev_unsubscribe_keys(settings) == first
    assert (tmp_path / "unsubscribe.key").stat().st_mode & 0o777 == 0o600
    keys = KeyRing.parse(first)
    assert verify_token(keys, issue_token(keys, 1, 2)).customer_id == 2


def test_the_environment_wins(tmp_path: Path) -> None:
    given = "ops:" + "x" * 40
    settings = Settings(data_dir=tmp_path, unsubscribe_keys=SecretStr(given))
    assert dev_unsubscribe_keys(settings) == given
    assert not (tmp_path / "unsubscribe.key").exists()
