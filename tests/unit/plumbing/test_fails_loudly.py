"""The test plumbing fails a test that leaves trouble behind: an exception nobody retrieved from a
task, and resources nobody closed. Checked from outside, in a pytest session of its own.
"""

from pathlib import Path

from tests.helpers import run_pytest

FAILED_TASK = """
import asyncio
import gc


async def test_clean() -> None:
    await asyncio.sleep(0)


async def test_leaves_a_failed_task_to_the_garbage_collector() -> None:
    # Only the collector frees the task below, never reference counting by chance. Left
    # disabled: this is the session's last test, and explicit gc.collect() still runs.
    gc.disable()

    async def boom() -> None:
        raise RuntimeError("boom from a task nobody awaited")

    task = asyncio.create_task(boom())
    await asyncio.sleep(0.01)
    assert task.done()
    cycle: list[object] = [task]
    cycle.append(cycle)
"""

UNCLOSED_SOCKET = """
import socket


def test_clean() -> None:
    with socket.socket():
        pass


def test_leaves_a_socket_open() -> None:
    socket.socket()
"""


def test_a_task_exception_seen_only_at_garbage_collection_fails_its_test(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, FAILED_TASK)
    assert run.returncode == 1, run.stdout
    # The test itself passed; its teardown is the error.
    assert "2 passed, 1 error" in run.stdout, run.stdout
    assert "ERROR at teardown of test_leaves_a_failed_task_to_the_garbage_collector" in run.stdout
    assert "Task exception was never retrieved" in run.stdout
    assert "boom from a task nobody awaited" in run.stdout


def test_an_unclosed_socket_fails_its_test(tmp_path: Path) -> None:
    run = run_pytest(tmp_path, UNCLOSED_SOCKET)
    assert run.returncode == 1, run.stdout
    assert "1 failed, 1 passed" in run.stdout, run.stdout
    assert "FAILED test_inner.py::test_leaves_a_socket_open" in run.stdout
    assert "ResourceWarning: unclosed <socket.socket" in run.stdout
