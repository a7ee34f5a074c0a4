"""docker-compose.yml cannot rot silently: Docker does not run here, so its structure is
checked instead, and each check is shown to catch the breakage it is for."""

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.unit.deploy import compose_checks as checks
from tests.unit.deploy.settings_env import REPO, role_problems, settings_from

Mutation = Callable[[checks.Compose], None]


@pytest.fixture(scope="module")
def compose() -> checks.Compose:
    return checks.load()


@pytest.mark.parametrize("name", sorted(checks.CHECKS))
def test_the_compose_file_passes_each_check(compose: checks.Compose, name: str) -> None:
    assert checks.CHECKS[name](compose) == []


def _svc(compose: checks.Compose, name: str) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"][name]
    return service


def _set_env(name: str, var: str, value: str | None) -> Mutation:
    def mutate(compose: checks.Compose) -> None:
        env = dict(_svc(compose, name)["environment"])  # anchors share one dict: copy it
        if value is None:
            env.pop(var)
        else:
            env[var] = value
        _svc(compose, name)["environment"] = env

    return mutate


def _set(name: str, key: str, value: Any) -> Mutation:
    def mutate(compose: checks.Compose) -> None:
        if value is None:
            _svc(compose, name).pop(key)
        else:
            _svc(compose, name)[key] = value

    return mutate


def _rename(old: str, new: str) -> Mutation:
    def mutate(compose: checks.Compose) -> None:
        compose["services"][new] = compose["services"].pop(old)

    return mutate


def _drop_dependency(name: str, dep: str) -> Mutation:
    def mutate(compose: checks.Compose) -> None:
        deps = dict(_svc(compose, name)["depends_on"])
        deps.pop(dep)
        _svc(compose, name)["depends_on"] = deps

    return mutate


def _healthcheck(name: str, test: list[str]) -> Mutation:
    return _set(name, "healthcheck", {"test": test})


def _python_check(port: int) -> list[str]:
    code = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/readyz')"
    return ["CMD", "python", "-c", code]


BREAKAGES: list[tuple[str, Mutation, str]] = [
    ("services", _rename("tagger", "tagger-old"), "no service 'tagger'"),
    ("images", _set("kafka", "image", "apache/kafka:latest"), "not pinned"),
    ("images", _set("postgres", "image", "postgres"), "has no tag"),
    ("images", _set("grafana", "image", "grafana/grafana:main"), "not pinned"),
    ("images", _set("api", "image", "segflow:0.0.1"), "not segflow's version"),
    ("healthchecks", _set("segmenter", "healthcheck", None), "segmenter: no healthcheck"),
    ("healthchecks", _healthcheck("api", _python_check(8000)), "api: healthcheck is not"),
    ("healthchecks", _healthcheck("grafana", ["CMD", "curl", "-f", "x"]), "curl"),
    ("restart", _set("ingest", "restart", None), "ingest: restart ''"),
    ("restart", _set("tagger", "restart", "no"), "tagger: restart 'no'"),
    ("restart", _set("migrate", "restart", "always"), "migrate: a one-shot job"),
    ("depends_on", _set("api", "depends_on", ["migrate", "postgres"]), "a list"),
    ("depends_on", _drop_dependency("tagger", "topics"), "tagger: must wait for topics"),
    ("depends_on", _drop_dependency("segmenter", "migrate"), "segmenter: must wait for migrate"),
    (
        "depends_on",
        _set("grafana", "depends_on", {"prometheus": {"condition": "service_started"}}),
        "condition 'service_started'",
    ),
    (
        "depends_on",
        _set(
            "ingest-proxy",
            "depends_on",
            {"ingest": {"condition": "service_completed_successfully"}},
        ),
        "no one-shot job",
    ),
    ("env names", _set_env("ingest", "SEGFLOW_INGEST_PROT", "8000"), "SEGFLOW_INGEST_PROT"),
    ("env names", _set_env("tagger", "SMTP_HOST", "mail"), "SMTP_HOST is no setting"),
    ("secrets", _set_env("api", "SEGFLOW_OPERATOR_TOKEN", "o" * 40), "SEGFLOW_OPERATOR_TOKEN"),
    ("secrets", _set_env("tagger", "SEGFLOW_SMTP_PASSWORD", "${P:-x}"), "SEGFLOW_SMTP_PASSWORD"),
    ("secrets", _set_env("postgres", "POSTGRES_PASSWORD", "postgres"), "POSTGRES_PASSWORD"),
    (
        "secrets",
        _set_env("ingest", "DATABASE_URL", "postgresql://segflow:hunter2@postgres/segflow"),
        "DATABASE_URL has a password",
    ),
    ("replicas", _set("segmenter", "deploy", {"replicas": 1}), "segmenter: 1 replica(s)"),
    ("replicas", _set("ingest", "ports", ["8000:8000"]), "ingest: a published port"),
    ("proxy", _set("ingest-proxy", "ports", ["8080:8000"]), "does not publish 8000"),
    ("durability", _set_env("kafka", "KAFKA_LOG_DIRS", None), "log dirs"),
    ("durability", _set_env("kafka", "KAFKA_LOG_DIRS", "/tmp/kraft-combined-logs"), "log dirs"),
    ("durability", _set_env("kafka", "KAFKA_ZOOKEEPER_CONNECT", "zk:2181"), "KRaft"),
    ("durability", _set("postgres", "volumes", ["./pg:/var/lib/postgresql"]), "postgres"),
    (
        "mounts",
        _set(
            "ingest-proxy", "volumes", ["./deploy/nginx/gone.conf:/etc/nginx/conf.d/default.conf"]
        ),
        "gone.conf, which does not exist",
    ),
    ("prometheus", _rename("tagger", "tagger-2"), "no job scrapes every tagger-2 replica"),
    (
        "prometheus",
        _set("prometheus", "command", ["--config.file=/etc/prometheus/other.yml"]),
        "is not deploy/prometheus/prometheus.yml",
    ),
    (
        "grafana",
        _set("grafana", "volumes", ["./deploy/grafana/provisioning:/etc/grafana/provisioning:ro"]),
        "no dashboard provider loads deploy/grafana",
    ),
]


@pytest.mark.parametrize(
    ("check", "mutate", "expected"),
    BREAKAGES,
    ids=[f"{check}: {expected}" for check, _, expected in BREAKAGES],
)
def test_each_check_catches_its_breakage(
    compose: checks.Compose, check: str, mutate: Mutation, expected: str
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    problems = checks.CHECKS[check](broken)
    assert any(expected in problem for problem in problems), problems


def test_every_check_has_a_breakage_it_catches() -> None:
    assert {check for check, _, _ in BREAKAGES} == set(checks.CHECKS)


def test_prometheus_must_load_the_alert_rules(compose: checks.Compose) -> None:
    with open(REPO / checks.PROMETHEUS_CONFIG, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    assert checks.prometheus_problems(compose, config) == []
    config["rule_files"] = ["rules/*.yml"]
    assert checks.prometheus_problems(compose, config) == [
        "prometheus: rule_files does not load deploy/prometheus/alerts.yml"
    ]


def _roles(compose: checks.Compose) -> dict[str, str]:
    return {
        name: str(checks.role(service))
        for name, service in checks.services(compose).items()
        if checks.is_segflow(service)
    }


def test_each_roles_environment_is_settings_it_starts_with(
    compose: checks.Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Interpolated as compose would with every required variable set: the production
    # validators pass, and nothing `segflow ROLE` requires at start is missing.
    roles = _roles(compose)
    assert set(roles.values()) == {"migrate", "topics", "ingest", "segmenter", "api", "tagger"}
    for name, cmd in roles.items():
        env = {k: checks.interpolate(v) for k, v in checks.environment(_svc(compose, name)).items()}
        settings = settings_from(env, monkeypatch)
        assert settings.environment == "production", name
        assert settings.host == "0.0.0.0", name
        assert role_problems(cmd, settings) == [], name


def test_a_role_missing_what_it_needs_at_start_is_caught(
    compose: checks.Compose, monkeypatch: pytest.MonkeyPatch
) -> None:
    tagger = checks.environment(_svc(compose, "tagger"))
    env = {k: checks.interpolate(v) for k, v in tagger.items()}
    del env["SEGFLOW_UNSUBSCRIBE_KEYS"], env["KAFKA_BOOTSTRAP_SERVERS"]
    problems = role_problems("tagger", settings_from(env, monkeypatch))
    assert [p.split(":")[1].strip() for p in problems] == [
        "KAFKA_BOOTSTRAP_SERVERS",
        "unsubscribe keys",
    ]
