"""Checks of deploy/Dockerfile: multi-stage, a pinned base, a fixed non-root user."""

import re

from tests.unit.deploy.settings_env import REPO

DOCKERFILE = REPO / "deploy" / "Dockerfile"
# name:version@sha256:digest; the version names Python 3.11, which pyproject.toml requires.
PINNED = re.compile(r"^[a-z0-9./-]+:(?P<tag>\d+\.\d+\.\d+[a-z0-9.-]*)@sha256:[0-9a-f]{64}$")
PYTHON = re.compile(r"^python:3\.11\.")
UID_GID = re.compile(r"^(?P<uid>\d+)(:\d+)?$")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def stages(text: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(image, alias, instructions) per stage."""
    out: list[tuple[str, str, list[tuple[str, str]]]] = []
    for word, rest in instructions(text):
        if word == "FROM":
            parts = rest.split()
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
            out.append((parts[0], alias, []))
        elif out:
            out[-1][2].append((word, rest))
    return out


def problems(text: str) -> list[str]:
    found = []
    all_stages = stages(text)
    if len(all_stages) < 2:
        return ["not multi-stage"]
    aliases = set()
    for image, alias, _ in all_stages:
        if image not in aliases:
            if not PINNED.match(image):
                found.append(f"base {image!r} is not pinned by version and digest")
            elif not PYTHON.match(image):
                found.append(f"base {image!r} is not Python 3.11")
        aliases.add(alias)
    final = all_stages[-1][2]
    if not any(w == "COPY" and a.startswith("--from=") for w, a in final):
        found.append("the final stage copies nothing from an earlier one")
    users = [a for w, a in final if w == "USER"]
    user = UID_GID.match(users[-1]) if users else None
    if user is None:
        found.append("the final stage has no USER with a numeric uid")
    elif int(user["uid"]) == 0:
        found.append("the final stage runs as root")
    if ("ENTRYPOINT", '["segflow"]') not in final:
        found.append("the entry point is not segflow")
    return found


def final_uid(text: str) -> int:
    """The uid the image runs as (Kubernetes' runAsUser must be the same)."""
    users = [a for w, a in stages(text)[-1][2] if w == "USER"]
    match = UID_GID.match(users[-1])
    assert match is not None
    return int(match["uid"])
