"""Each role's grace period in compose and Kubernetes outlasts its own shutdown bound
(SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS), so a role always ends its stop itself: exit 0, or exit 1
with the log line saying what it abandoned, never a SIGKILL in the middle."""

import copy
import re
from typing import Any

from services.common.settings import Settings
from tests.unit.deploy import compose_checks, k8s_checks

ROLES = {"ingest", "segmenter", "api", "tagger"}
DOCKER_DEFAULT_GRACE = 10.0  # docker stop's default when stop_grace_period is not set
K8S_DEFAULT_GRACE = 30.0  # terminationGracePeriodSeconds' default
_DURATION = re.compile(r"^(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def _seconds(duration: object) -> float:
    """A compose duration ("30s", "1m30s") in seconds."""
    found = _DURATION.match(str(duration))
    if found is None or not any(found.groups()):
        raise ValueError(f"not a compose duration: {duration!r}")
    minutes, seconds = found.groups()
    return int(minutes or 0) * 60 + float(seconds or 0)


def _bound(env: dict[str, str]) -> float:
    given = env.get("SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS")
    return float(given) if given else Settings().shutdown_timeout_seconds


def compose_problems(compose: compose_checks.Compose) -> list[str]:
    problems = []
    for name, service in compose_checks.services(compose).items():
        if compose_checks.role(service) not in ROLES:
            continue
        grace = _seconds(service.get("stop_grace_period", f"{DOCKER_DEFAULT_GRACE}s"))
        bound = _bound(compose_checks.environment(service))
        if grace <= bound:
            problems.append(f"{name}: stop_grace_period {grace:g} s <= shutdown bound {bound:g} s")
    return problems


def k8s_problems(docs: list[Any]) -> list[str]:
    config = {
        str(k): str(v)
        for doc in k8s_checks.of_kind(docs, "ConfigMap")
        if doc["metadata"]["name"] == k8s_checks.CONFIG_MAP
        for k, v in (doc.get("data") or {}).items()
    }
    problems = []
    for doc, cmd in k8s_checks.workloads(docs):
        if doc["kind"] != "Deployment" or cmd not in ROLES:
            continue
        spec = k8s_checks.pod_spec(doc)
        grace = float(spec.get("terminationGracePeriodSeconds", K8S_DEFAULT_GRACE))
        env = {**config, **{e["name"]: str(e.get("value", "")) for e in _env(doc)}}
        bound = _bound(env)
        # The grace period runs from the preStop hook's start: its sleep comes out of it.
        pause = max(_pre_stop_sleep(c) for c in k8s_checks.containers(doc))
        if grace <= pause + bound:
            problems.append(
                f"{k8s_checks.name(doc)}: terminationGracePeriodSeconds {grace:g} "
                f"<= preStop sleep {pause:g} s + shutdown bound {bound:g} s"
            )
    return problems


def _pre_stop_sleep(container: dict[str, Any]) -> float:
    """Seconds a container's preStop hook sleeps (`sleep N`, or the sleep action), else 0."""
    hook = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = (hook.get("exec") or {}).get("command") or []
    if len(command) == 2 and command[0] == "sleep":
        return float(command[1])
    if command:
        raise ValueError(f"a preStop hook this check cannot time: {command!r}")
    return 0.0


def _env(doc: Any) -> list[dict[str, Any]]:
    return [e for c in k8s_checks.containers(doc) for e in c.get("env") or [] if "value" in e]


def test_every_roles_grace_period_in_compose_outlasts_its_shutdown_bound() -> None:
    compose = compose_checks.load()
    assert compose_problems(compose) == []
    # The check sees a grace shorter than the bound, and a missing one (docker's 10 s).
    short = copy.deepcopy(compose)
    short["services"]["api"]["stop_grace_period"] = "20s"
    short["services"]["tagger"].pop("stop_grace_period", None)
    assert compose_problems(short) == [
        "api: stop_grace_period 20 s <= shutdown bound 25 s",
        "tagger: stop_grace_period 10 s <= shutdown bound 25 s",
    ]


def test_every_roles_grace_period_on_kubernetes_outlasts_its_shutdown_bound() -> None:
    docs = k8s_checks.load()
    assert k8s_problems(docs) == []
    short = copy.deepcopy(docs)
    api = k8s_checks.deployment(short, "api")
    assert api is not None
    k8s_checks.pod_spec(api)["terminationGracePeriodSeconds"] = 30
    assert k8s_problems(short) == [
        f"{k8s_checks.name(api)}: terminationGracePeriodSeconds 30 "
        "<= preStop sleep 5 s + shutdown bound 25 s"
    ]


def test_roles_behind_a_service_sleep_before_sigterm_on_kubernetes() -> None:
    """Endpoints are removed while the pod sleeps, so its listener closes to no new traffic."""
    docs = k8s_checks.load()
    for cmd in ("ingest", "api", "tagger"):
        found = k8s_checks.deployment(docs, cmd)
        assert found is not None
        assert [_pre_stop_sleep(c) for c in k8s_checks.containers(found)] == [5.0], cmd
