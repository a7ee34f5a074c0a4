"""The Kubernetes manifests under deploy/k8s/ validate against the pinned Kubernetes
version's schemas and fit segflow (probes, requests from the benchmark, env names, secrets);
each check is shown to catch the breakage it is for."""

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.deploy import k8s_checks as checks
from tests.unit.deploy.compose_checks import project_version
from tests.unit.deploy.dockerfile_checks import DOCKERFILE, final_uid
from tests.unit.deploy.settings_env import role_problems, settings_from

Docs = list[checks.Doc]
Mutation = Callable[[Docs], None]


@pytest.fixture(scope="module")
def docs() -> Docs:
    return checks.load()


@pytest.mark.parametrize("name", sorted(checks.CHECKS))
def test_the_manifests_pass_each_check(docs: Docs, name: str) -> None:
    assert checks.CHECKS[name](docs) == []


def test_every_workload_runs_the_image_as_its_own_non_root_user(docs: Docs) -> None:
    uid = final_uid(DOCKERFILE.read_text(encoding="utf-8"))
    assert checks.image_problems(docs, project_version(), uid) == []
    assert checks.image_problems(docs, project_version(), uid + 1) != []
    assert checks.image_problems(docs, "0.0.1", uid) != []


def _doc(docs: Docs, full_name: str) -> checks.Doc:
    return next(d for d in docs if checks.name(d) == full_name)


def _container(docs: Docs, full_name: str) -> dict[str, Any]:
    return checks.containers(_doc(docs, full_name))[0]


def _edit(full_name: str, change: Callable[[checks.Doc], None]) -> Mutation:
    return lambda docs: change(_doc(docs, full_name))


def _edit_container(full_name: str, change: Callable[[dict[str, Any]], None]) -> Mutation:
    return lambda docs: change(_container(docs, full_name))


def _remove(full_name: str) -> Mutation:
    return lambda docs: docs.remove(_doc(docs, full_name))


def _add(doc: checks.Doc) -> Mutation:
    return lambda docs: docs.append(doc)


def _env(full_name: str, entry: dict[str, Any]) -> Mutation:
    return _edit_container(full_name, lambda c: c.setdefault("env", []).append(entry))


def _config(key: str, value: str) -> Mutation:
    return _edit("ConfigMap/segflow-settings", lambda d: d["data"].update({key: value}))


INGEST = "Deployment/segflow-ingest"
SEGMENTER = "Deployment/segflow-segmenter"
API = "Deployment/segflow-api"
TAGGER = "Deployment/segflow-tagger"

BREAKAGES: list[tuple[str, Mutation, str]] = [
    ("schema", _edit(INGEST, lambda d: d["spec"].update({"replica": 2})), "replica"),
    ("schema", _edit_container(API, lambda c: c.update({"ports": "8001"})), "ports"),
    ("schema", _edit("Service/segflow-api", lambda d: d.update({"apiVersion": "v2"})), "schema"),
    (
        "kinds",
        _add({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor"}),
        "no ServiceMonitor",
    ),
    ("kinds", _add({"apiVersion": "v1", "kind": "Secret", "data": {}}), "never committed"),
    ("workloads", _remove(TAGGER), "no Deployment runs `segflow tagger`"),
    ("workloads", _remove("Job/segflow-topics"), "no Job runs `segflow topics`"),
    (
        "workloads",
        _edit("Job/segflow-migrate", lambda d: checks.pod_spec(d).update(restartPolicy="Always")),
        "must not restart forever",
    ),
    ("probes", _edit_container(SEGMENTER, lambda c: c.pop("livenessProbe")), "livenessProbe"),
    (
        "probes",
        _edit_container(API, lambda c: c["readinessProbe"]["httpGet"].update(path="/healthz")),
        "readinessProbe is not GET /readyz",
    ),
    (
        "probes",
        _edit_container(INGEST, lambda c: c["readinessProbe"]["httpGet"].update(port=8001)),
        "on port 8000",
    ),
    ("resources", _edit_container(TAGGER, lambda c: c.pop("resources")), "no cpu or memory"),
    (
        "resources",
        _edit_container(SEGMENTER, lambda c: c["resources"]["requests"].update(memory="64Mi")),
        "under 1.5 x the measured peak RSS (",
    ),
    (
        "resources",
        _edit_container(INGEST, lambda c: c["resources"]["limits"].update(memory="128Mi")),
        "memory limit 128Mi",
    ),
    (
        "resources",
        _edit_container("Job/segflow-migrate", lambda c: c["resources"]["requests"].pop("cpu")),
        "no cpu request",
    ),
    (
        "disruption budgets",
        _remove("PodDisruptionBudget/segflow-api"),
        "0 PodDisruptionBudgets select its pods",
    ),
    (
        "disruption budgets",
        _edit("PodDisruptionBudget/segflow-ingest", lambda d: d["spec"].update(minAvailable=2)),
        "would block every drain",
    ),
    ("services", _remove("Service/segflow-tagger"), "no Service reaches its port 8002"),
    (
        "services",
        _edit("Service/segflow-api", lambda d: d["spec"]["ports"][0].update(targetPort=8000)),
        "no Service reaches its port 8001",
    ),
    (
        "annotations",
        _edit(
            INGEST,
            lambda d: d["spec"]["template"]["metadata"]["annotations"].pop("prometheus.io/scrape"),
        ),
        "prometheus.io/scrape",
    ),
    (
        "annotations",
        _edit(
            SEGMENTER,
            lambda d: d["spec"]["template"]["metadata"]["annotations"].update(
                {"prometheus.io/port": "8000"}
            ),
        ),
        "prometheus.io/port is not '8010'",
    ),
    ("env names", _config("SEGFLOW_KAFKA_SERVERS", "k:9092"), "SEGFLOW_KAFKA_SERVERS is no"),
    ("env names", _env(API, {"name": "SEGFLOW_APIPORT", "value": "1"}), "SEGFLOW_APIPORT"),
    ("secrets", _config("SEGFLOW_SMTP_PASSWORD", "x"), "SEGFLOW_SMTP_PASSWORD is a secret"),
    (
        "secrets",
        _env(API, {"name": "SEGFLOW_OPERATOR_TOKEN_PREVIOUS", "value": "o" * 40}),
        "written in the manifest",
    ),
    (
        "secrets",
        _edit_container(
            TAGGER,
            lambda c: c["env"][1]["valueFrom"]["secretKeyRef"].update(key="sealing"),
        ),
        "SEGFLOW_SEALING_KEYS is not key SEGFLOW_SEALING_KEYS",
    ),
]


@pytest.mark.parametrize(
    ("check", "mutate", "expected"),
    BREAKAGES,
    ids=[f"{check}: {expected}" for check, _, expected in BREAKAGES],
)
def test_each_check_catches_its_breakage(
    docs: Docs, check: str, mutate: Mutation, expected: str
) -> None:
    broken = copy.deepcopy(docs)
    mutate(broken)
    problems = checks.CHECKS[check](broken)
    assert any(expected in problem for problem in problems), problems


def test_every_check_has_a_breakage_it_catches() -> None:
    assert {check for check, _, _ in BREAKAGES} == set(checks.CHECKS)


def test_each_workloads_environment_is_settings_it_starts_with(
    docs: Docs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ConfigMap plus the workload's own env, the Secret's keys given sample values: the
    # production validators pass, and nothing `segflow ROLE` requires at start is missing.
    seen = set()
    for doc, cmd in checks.workloads(docs):
        settings = settings_from(checks.environment(docs, doc), monkeypatch)
        assert settings.environment == "production", checks.name(doc)
        assert settings.host == "0.0.0.0", checks.name(doc)
        assert role_problems(cmd, settings) == [], checks.name(doc)
        seen.add(cmd)
    assert seen == {"migrate", "topics", "ingest", "segmenter", "api", "tagger"}


def test_a_workload_missing_a_secret_it_needs_is_caught(
    docs: Docs, monkeypatch: pytest.MonkeyPatch
) -> None:
    tagger = copy.deepcopy(_doc(docs, TAGGER))
    env = checks.containers(tagger)[0]["env"]
    env[:] = [e for e in env if e["name"] != "SEGFLOW_SEALING_KEYS"]
    settings = settings_from(checks.environment(docs, tagger), monkeypatch)
    assert [p.split(":")[1].strip() for p in role_problems("tagger", settings)] == ["sealing keys"]
