"""An external server named by the environment but not answering stops the run at once, with one
message naming the variable and the address, instead of an error per test or a long hang.
"""

import time
from pathlib import Path

import pytest

from tests.helpers import free_port, run_pytest

# Two tests share the session fixture: the second must never run, let alone error again.
TWO_TESTS = """
async def test_first({fixture}: object) -> None:
    pass


async def test_second({fixture}: object) -> None:
    pass
"""


@pytest.mark.parametrize(
    ("variable", "address", "fixture", "server"),
    [
        (
            "DATABASE_URL",
            "postgresql://postgres:secret@127.0.0.1:{port}/postgres",
            "db",
            "PostgreSQL",
        ),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:{port}", "kafka_bootstrap", "Kafka"),
    ],
)
def test_an_unreachable_external_server_stops_the_run_with_one_message(
    tmp_path: Path, variable: str, address: str, fixture: str, server: str
) -> None:
    port = free_port()  # nobody listens there
    value = address.format(port=port)
    started = time.monotonic()
    run = run_pytest(tmp_path, TWO_TESTS.format(fixture=fixture), env={variable: value})
    elapsed = time.monotonic() - started

    assert run.returncode == 3, run.stdout
    lines = [line for line in run.stdout.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(lines) == 1, run.stdout
    assert variable in lines[0] and server in lines[0], lines[0]
    assert "secret" not in run.stdout
    assert "test_second" not in run.stdout
    assert "ERROR" not in run.stdout, run.stdout
    assert elapsed < 60, elapsed
