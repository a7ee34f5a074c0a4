"""The segmenter's pure domain imports no I/O framework, so it can be reasoned about and tested
without a database, a broker or an HTTP server."""

import pkgutil
import subprocess
import sys

import services.segmenter.domain as domain

FORBIDDEN = ("asyncpg", "aiokafka", "fastapi", "starlette", "uvicorn")


def domain_modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(domain.__path__, prefix=f"{domain.__name__}.")
    )


def test_the_domain_package_has_the_reducer_derive_and_rules() -> None:
    names = domain_modules()
    for expected in ("reducer", "derive", "facts", "state", "rules.compile_py"):
        assert f"services.segmenter.domain.{expected}" in names


def test_pure_packages_import_no_io_framework() -> None:
    # A fresh interpreter, so modules the test runner loaded do not hide an import.
    script = (
        "import importlib, sys\n"
        f"for name in {domain_modules()!r}: importlib.import_module(name)\n"
        f"print(','.join(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "", f"the domain imports {result.stdout.strip()}"
