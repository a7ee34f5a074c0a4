"""The journeys tests are pure and synchronous: no event loop to watch and no client to leave
open. The session's autouse check (tests/conftest.py) ends every test with a full garbage
collection, which costs more here than the tests themselves, so it is replaced by a no-op for
this folder. ResourceWarnings still fail a test: pyproject turns them into errors."""

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fail_on_loop_errors() -> Iterator[None]:
    yield
