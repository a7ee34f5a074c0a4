"""The `segflow` command's argument parsing."""

from datetime import UTC, datetime

import pytest

from services.cli import build_parser


def test_exported_at_needs_a_utc_offset(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(
        [
            "import",
            "--shop",
            "x.myshopify.com",
            "--exported-at",
            "2026-05-01T10:00:00+02:00",
            "a.csv",
        ]
    )
    assert args.exported_at == datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(
            ["import", "--shop", "x.myshopify.com", "--exported-at", "2026-05-01T10:00", "a.csv"]
        )
    assert exited.value.code == 2
    assert "has no UTC offset" in capsys.readouterr().err


def test_the_shopify_standin_has_a_subcommand() -> None:
    from services.cli import COMMANDS

    args = build_parser().parse_args(["shopify-standin"])
    assert args.command == "shopify-standin" and "shopify-standin" in COMMANDS
