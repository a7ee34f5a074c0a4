"""The journeys domain is pure: it imports no database, broker, HTTP or SMTP library, so the
storage and the scheduler built on it can be swapped and it can be tested without servers."""

import pkgutil
import subprocess
import sys

import services.tagger.journeys as journeys

FORBIDDEN = ("asyncpg", "aiokafka", "fastapi", "starlette", "uvicorn", "httpx", "smtplib")


def journey_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(journeys.__path__, prefix=f"{journeys.__name__}.")
    )


def test_the_journeys_package_has_its_modules() -> None:
    names = journey_modules()
    for expected in ("model", "shipped", "machine", "timing", "holdout", "stats", "zones"):
        assert f"services.tagger.journeys.{expected}" in names


def test_the_journeys_domain_imports_no_io_library() -> None:
    # A fresh interpreter, so modules the test runner loaded do not hide an import.
    script = (
        "import importlib, sys\n"
        f"for name in {journey_modules()!r}: importlib.import_module(name)\n"
        f"print(','.join(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "", f"the journeys domain imports {result.stdout.strip()}"
