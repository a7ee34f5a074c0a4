"""The PostgreSQL servers migrations accept: 18 or later (casefold, pg_unicode_fast), UTF-8."""

import pytest

from services.common.db import UnsupportedServerError, check_server


@pytest.mark.parametrize(
    ("version_num", "shown"),
    [(170006, "17.6"), (160004, "16.4"), (100000, "10.0"), (90624, "9.6.24")],
)
def test_an_older_server_is_refused_naming_its_version(version_num: int, shown: str) -> None:
    with pytest.raises(UnsupportedServerError) as refused:
        check_server(version_num, "UTF8")
    assert str(refused.value) == (
        f"PostgreSQL {shown} is too old: segflow needs PostgreSQL 18 or later "
        "(for casefold() and the pg_unicode_fast collation)"
    )


@pytest.mark.parametrize("version_num", [180000, 180006, 190002])
def test_postgresql_18_and_later_are_accepted(version_num: int) -> None:
    check_server(version_num, "UTF8")


@pytest.mark.parametrize("encoding", ["SQL_ASCII", "LATIN1"])
def test_a_database_not_in_utf8_is_refused(encoding: str) -> None:
    with pytest.raises(UnsupportedServerError, match=f"encoding is {encoding}.*UTF8"):
        check_server(180006, encoding)


def test_the_refusal_is_a_runtime_error_the_cli_prints_as_one_line() -> None:
    # `segflow migrate` answers any RuntimeError with "segflow: <message>" and exit status 2.
    assert issubclass(UnsupportedServerError, RuntimeError)
