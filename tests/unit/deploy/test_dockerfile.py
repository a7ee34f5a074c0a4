"""deploy/Dockerfile: multi-stage, a pinned base, a fixed non-root user; each check is shown
to catch the breakage it is for."""

import re
from collections.abc import Callable

import pytest

from tests.unit.deploy.dockerfile_checks import DOCKERFILE, problems


def test_the_dockerfile_is_multi_stage_pinned_and_not_root() -> None:
    assert problems(DOCKERFILE.read_text(encoding="utf-8")) == []


def _replace(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new)


def _single_stage(text: str) -> str:
    second = text.index("\nFROM ", text.index("FROM ") + 1)
    return text[:second]


BREAKAGES = [
    (_single_stage, "not multi-stage"),
    (_replace("USER 10001:10001", "USER root"), "no USER with a numeric uid"),
    (_replace("USER 10001:10001", "USER 0:0"), "runs as root"),
    (_replace("USER 10001:10001", ""), "no USER"),
    (_replace("python:3.11.14-slim-bookworm@sha256:", "python:3.11-slim@sha256:"), "not pinned"),
    (lambda t: re.sub(r"@sha256:[0-9a-f]{64} AS runtime", " AS runtime", t), "not pinned"),
    (_replace("python:3.11.14-slim", "python:3.12.9-slim"), "not Python 3.11"),
    (_replace("COPY --from=build", "COPY"), "copies nothing"),
    (_replace('ENTRYPOINT ["segflow"]', 'ENTRYPOINT ["sh"]'), "entry point"),
]


@pytest.mark.parametrize(("mutate", "expected"), BREAKAGES, ids=[e for _, e in BREAKAGES])
def test_each_check_catches_its_breakage(mutate: Callable[[str], str], expected: str) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    broken = mutate(text)
    assert broken != text
    assert any(expected in problem for problem in problems(broken)), problems(broken)
