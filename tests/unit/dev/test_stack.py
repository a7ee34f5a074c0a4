from collections.abc import Mapping
from pathlib import Path

from services.common.settings import Settings
from services.dev.stack import redact_dsn, roles, with_database


def test_with_database_keeps_socket_parameters() -> None:
    assert (
        with_database("postgresql://postgres:@/postgres?host=/tmp/pg", "segflow")
        == "postgresql://postgres:@/segflow?host=/tmp/pg"
    )
    assert with_database("postgresql://u:p@h:5432/x", "y") == "postgresql://u:p@h:5432/y"


def test_redact_dsn_hides_passwords_only() -> None:
    assert redact_dsn("postgresql://u:s3cr@t@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_dsn("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redact_dsn("postgresql://postgres:@/x?host=/s") == "postgresql://postgres:@/x?host=/s"


def test_segflow_dev_turns_the_freshness_window_off_for_ingest_unless_one_is_given(
    tmp_path: Path,
) -> None:
    def ingest_env(settings: Settings) -> Mapping[str, str]:
        [ingest] = [role for role in roles(settings, tmp_path) if role.name == "ingest"]
        return ingest.env(0)

    # `segflow demo` replays months of history with its own trigger times.
    assert ingest_env(Settings())["SEGFLOW_WEBHOOK_MAX_AGE_SECONDS"] == "0"
    assert "SEGFLOW_WEBHOOK_MAX_AGE_SECONDS" not in ingest_env(
        Settings(webhook_max_age_seconds=3600)
    )
