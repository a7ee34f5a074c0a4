from services.dev.stack import redact_dsn, with_database


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
