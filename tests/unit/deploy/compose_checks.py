"""Checks of docker-compose.yml's structure, each a function from the parsed file to the
problems it finds (empty: none), so a test can run it on the real file and on a broken copy."""

import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.unit.deploy.settings_env import (
    NEEDS_DATABASE,
    NEEDS_KAFKA,
    ONE_SHOT,
    REPO,
    ROLE_PORTS,
    SAMPLE_DEFAULT,
    SAMPLE_VALUES,
    SECRET_URL,
    secret_env_names,
    settings_env_names,
)

Compose = dict[str, Any]

COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = "deploy/Dockerfile"
REQUIRED_SERVICES = {
    "postgres",
    "kafka",
    "migrate",
    "topics",
    "ingest",
    "ingest-proxy",
    "segmenter",
    "api",
    "tagger",
    "prometheus",
    "grafana",
}
# Replicas the issue asks for: ingest behind one port, segmenter members of one group.
REPLICAS = {"ingest": 2, "segmenter": 2}
KEEP_RUNNING = {"always", "unless-stopped", "on-failure"}
# A version tag: digits and dots, an optional leading v and a variant (1.28.0-alpine).
VERSION_TAG = re.compile(r"^v?\d+(\.\d+)+(-[a-z0-9.]+)?$")
# Names other images read that hold secrets (POSTGRES_PASSWORD, GF_SECURITY_ADMIN_PASSWORD).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEYS?$")
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[?-])(?P<arg>[^}]*))?\}"
)
REQUIRED = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}$")
READINESS_URL = re.compile(
    r"urllib\.request\.urlopen\('http://127\.0\.0\.1:(\d+)(/readyz|/healthz)'"
)


def load(path: Any = COMPOSE_FILE) -> Compose:
    """The compose file as data (anchors and merge keys resolved, as compose does)."""
    with open(path, encoding="utf-8") as f:
        data: Compose = yaml.safe_load(f)
    return data


def project_version() -> str:
    with open(REPO / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def services(compose: Compose) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose.get("services") or {}
    return found


def is_segflow(service: Mapping[str, Any]) -> bool:
    """Built from segflow's own Dockerfile."""
    build = service.get("build")
    return isinstance(build, Mapping) and build.get("dockerfile") == DOCKERFILE


def role(service: Mapping[str, Any]) -> str | None:
    """The `segflow` command a segflow service runs."""
    command = service.get("command")
    return str(command[0]) if is_segflow(service) and command else None


def is_one_shot(service: Mapping[str, Any]) -> bool:
    return role(service) in ONE_SHOT


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def interpolate(value: str) -> str:
    """The value as compose would make it with every required variable given a sample."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if op == ":-":
            return str(arg)
        return SAMPLE_VALUES.get(name, SAMPLE_DEFAULT)

    return INTERPOLATION.sub(one, value)


def missing_services(compose: Compose) -> list[str]:
    return [f"no service {name!r}" for name in sorted(REQUIRED_SERVICES - set(services(compose)))]


def unpinned_images(compose: Compose) -> list[str]:
    problems = []
    for name, service in services(compose).items():
        image = str(service.get("image", ""))
        repo, _, tag = image.rpartition(":")
        if not image or not repo or "/" in tag:
            problems.append(f"{name}: image {image!r} has no tag")
        elif tag == "latest" or not VERSION_TAG.match(tag):
            problems.append(f"{name}: image {image!r} is not pinned to a version")
        elif is_segflow(service) and tag != project_version():
            problems.append(f"{name}: image {image!r} is not segflow's version {project_version()}")
    return problems


def healthcheck_problems(compose: Compose) -> list[str]:
    problems = []
    for name, service in services(compose).items():
        if is_one_shot(service):
            continue
        check = service.get("healthcheck") or {}
        test = check.get("test") or []
        if check.get("disable") or not test or test == ["NONE"]:
            problems.append(f"{name}: no healthcheck")
            continue
        text = " ".join(map(str, test))
        if "curl" in text:
            problems.append(f"{name}: healthcheck uses curl, which the images do not have")
        cmd = role(service)
        if cmd in ROLE_PORTS:
            found = READINESS_URL.search(text)
            port = _settings_port(cmd)
            if found is None or int(found[1]) != port:
                problems.append(
                    f"{name}: healthcheck is not python urllib on 127.0.0.1:{port}/readyz|/healthz"
                )
    return problems


def _settings_port(cmd: str) -> int:
    from services.common.settings import Settings

    return int(Settings.model_fields[ROLE_PORTS[cmd]].default)


def restart_problems(compose: Compose) -> list[str]:
    problems = []
    for name, service in services(compose).items():
        policy = str(service.get("restart", ""))
        if is_one_shot(service):
            if policy != "no":
                problems.append(f"{name}: a one-shot job must not restart (restart: 'no')")
        elif policy.split(":")[0] not in KEEP_RUNNING:
            problems.append(f"{name}: restart {policy!r} does not restart it when it exits")
    return problems


def depends_on_problems(compose: Compose) -> list[str]:
    problems = []
    all_services = services(compose)
    for name, service in all_services.items():
        deps = service.get("depends_on") or {}
        if not isinstance(deps, Mapping):
            problems.append(f"{name}: depends_on without conditions (a list)")
            continue
        for dep, spec in deps.items():
            condition = (spec or {}).get("condition")
            target = all_services.get(dep, {})
            if condition == "service_healthy" and not target.get("healthcheck"):
                problems.append(f"{name}: waits for {dep} healthy, which has no healthcheck")
            elif condition == "service_completed_successfully" and not is_one_shot(target):
                problems.append(f"{name}: waits for {dep} to complete, which is no one-shot job")
            elif condition not in {"service_healthy", "service_completed_successfully"}:
                problems.append(f"{name}: depends on {dep} with condition {condition!r}")
        cmd = role(service)
        wanted = {}
        if cmd in NEEDS_DATABASE:
            wanted["postgres"] = "service_healthy"
            if cmd != "migrate":
                wanted["migrate"] = "service_completed_successfully"
        if cmd in NEEDS_KAFKA:
            wanted["kafka"] = "service_healthy"
            if cmd != "topics":
                wanted["topics"] = "service_completed_successfully"
        for dep, condition in wanted.items():
            if (deps.get(dep) or {}).get("condition") != condition:
                problems.append(f"{name}: must wait for {dep} ({condition})")
    return problems


def unknown_env_names(compose: Compose) -> list[str]:
    known = settings_env_names()
    return [
        f"{name}: {var} is no setting segflow reads"
        for name, service in services(compose).items()
        if is_segflow(service)
        for var in environment(service)
        if var.upper() not in known
    ]


def literal_secrets(compose: Compose) -> list[str]:
    secrets = secret_env_names()
    problems = []
    for name, service in services(compose).items():
        for var, value in environment(service).items():
            if var.upper() == SECRET_URL:
                password = urlsplit(value).password
                if password is not None and not REQUIRED.match(password):
                    problems.append(f"{name}: {var} has a password that is not ${{VAR:?...}}")
            elif (var.upper() in secrets or SECRET_NAME.search(var)) and not REQUIRED.match(value):
                problems.append(f"{name}: {var} is not a required variable ${{{var}:?...}}")
    return problems


def replica_problems(compose: Compose) -> list[str]:
    problems = []
    for name, count in REPLICAS.items():
        service = services(compose).get(name, {})
        replicas = (service.get("deploy") or {}).get("replicas", 1)
        if replicas != count:
            problems.append(f"{name}: {replicas} replica(s), not {count}")
        if service.get("ports") or service.get("container_name"):
            problems.append(f"{name}: a published port or a container name stops its replicas")
    return problems


def durability_problems(compose: Compose) -> list[str]:
    """Kafka in KRaft mode keeping its log in a volume; PostgreSQL keeping its data in one."""
    all_services = services(compose)
    problems = []
    kafka = all_services.get("kafka", {})
    env = environment(kafka)
    if "controller" not in env.get("KAFKA_PROCESS_ROLES", "") or any(
        "ZOOKEEPER" in var for var in env
    ):
        problems.append("kafka: not in KRaft mode (broker,controller; no ZooKeeper)")
    log_dirs = env.get("KAFKA_LOG_DIRS", "")
    if not log_dirs or not _in_named_volume(compose, kafka, log_dirs):
        problems.append(f"kafka: its log dirs {log_dirs!r} are not in a named volume")
    if not _in_named_volume(compose, all_services.get("postgres", {}), "/var/lib/postgresql"):
        problems.append("postgres: /var/lib/postgresql is not in a named volume")
    return problems


def _in_named_volume(compose: Compose, service: Mapping[str, Any], path: str) -> bool:
    named = set(compose.get("volumes") or {})
    for mount in service.get("volumes") or []:
        source, _, target = str(mount).partition(":")
        target = target.split(":")[0]
        if source in named and PurePosixPath(path).is_relative_to(target):
            return True
    return False


def bind_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Container path -> repository path of the service's bind mounts."""
    mounts = {}
    for mount in service.get("volumes") or []:
        source, _, rest = str(mount).partition(":")
        if source.startswith("./"):
            mounts[rest.split(":")[0]] = source[2:]
    return mounts


def missing_mount_sources(compose: Compose) -> list[str]:
    return [
        f"{name}: mounts ./{source}, which does not exist"
        for name, service in services(compose).items()
        for source in bind_mounts(service).values()
        if not (REPO / source).exists()
    ]


def _repo_path(service: Mapping[str, Any], container_path: str) -> PurePosixPath | None:
    """Where a container path of a bind-mounted file or folder is in the repository."""
    for target, source in bind_mounts(service).items():
        if PurePosixPath(container_path).is_relative_to(target):
            return PurePosixPath(source) / PurePosixPath(container_path).relative_to(target)
    return None


PROMETHEUS_CONFIG = PurePosixPath("deploy/prometheus/prometheus.yml")


def prometheus_problems(compose: Compose, config: Mapping[str, Any] | None = None) -> list[str]:
    """Prometheus loads deploy/prometheus/prometheus.yml (or `config` in its place), which
    scrapes every replica of every long-running role on its port and loads
    deploy/prometheus/alerts.yml."""
    prometheus = services(compose).get("prometheus", {})
    flags = [str(arg) for arg in prometheus.get("command") or []]
    config_at = next((f.split("=", 1)[1] for f in flags if f.startswith("--config.file=")), "")
    config_path = _repo_path(prometheus, config_at)
    if config_path != PROMETHEUS_CONFIG:
        return [f"prometheus: its config {config_at!r} is not {PROMETHEUS_CONFIG}"]
    if config is None:
        with open(REPO / config_path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    problems = []
    rules = [config_path.parent / str(p) for p in config.get("rule_files") or []]
    if PurePosixPath("deploy/prometheus/alerts.yml") not in rules:
        problems.append("prometheus: rule_files does not load deploy/prometheus/alerts.yml")
    jobs = config.get("scrape_configs") or []
    for name, service in services(compose).items():
        cmd = role(service)
        if cmd not in ROLE_PORTS:
            continue
        wanted = (name, _settings_port(cmd))
        if not any(_scrapes(job, *wanted) for job in jobs):
            problems.append(f"prometheus: no job scrapes every {name} replica on {wanted[1]}")
    return problems


def _scrapes(job: Mapping[str, Any], host: str, port: int) -> bool:
    if job.get("metrics_path", "/metrics") != "/metrics":
        return False
    return any(
        host in sd.get("names", []) and sd.get("type", "SRV") == "A" and sd.get("port") == port
        for sd in job.get("dns_sd_configs") or []
    )


def grafana_problems(compose: Compose) -> list[str]:
    """Grafana provisions Prometheus and loads the dashboards folder that holds
    deploy/grafana/segflow.json."""
    grafana = services(compose).get("grafana", {})
    provisioning = _repo_path(grafana, "/etc/grafana/provisioning")
    if provisioning != PurePosixPath("deploy/grafana/provisioning"):
        return ["grafana: /etc/grafana/provisioning is not deploy/grafana/provisioning"]
    problems = []
    with open(REPO / provisioning / "dashboards" / "segflow.yaml", encoding="utf-8") as f:
        providers = yaml.safe_load(f)["providers"]
    folders = [_repo_path(grafana, p["options"]["path"]) for p in providers]
    if PurePosixPath("deploy/grafana") not in folders:
        problems.append("grafana: no dashboard provider loads deploy/grafana (segflow.json)")
    with open(REPO / provisioning / "datasources" / "prometheus.yaml", encoding="utf-8") as f:
        sources = yaml.safe_load(f)["datasources"]
    if not any(s["type"] == "prometheus" and s["url"] == "http://prometheus:9090" for s in sources):
        problems.append("grafana: no data source is the compose Prometheus")
    return problems


def proxy_problems(compose: Compose) -> list[str]:
    """ingest-proxy publishes ingest's port and sends it to every ingest replica."""
    proxy = services(compose).get("ingest-proxy", {})
    port = _settings_port("ingest")
    conf = _repo_path(proxy, "/etc/nginx/conf.d/default.conf")
    problems = []
    if f"{port}:{port}" not in [str(p) for p in proxy.get("ports") or []]:
        problems.append(f"ingest-proxy: does not publish {port}")
    if conf is None or not (REPO / conf).is_file():
        return [*problems, "ingest-proxy: no nginx config mounted from the repository"]
    text = (REPO / conf).read_text(encoding="utf-8")
    # `resolve`: the replicas' addresses are looked up again, not once at start.
    if not re.search(rf"^\s*server ingest:{port} resolve;", text, re.M):
        problems.append(f"ingest-proxy: {conf} does not proxy to ingest:{port} (resolve)")
    return problems


CHECKS: dict[str, Callable[[Compose], list[str]]] = {
    "services": missing_services,
    "images": unpinned_images,
    "healthchecks": healthcheck_problems,
    "restart": restart_problems,
    "depends_on": depends_on_problems,
    "env names": unknown_env_names,
    "secrets": literal_secrets,
    "replicas": replica_problems,
    "proxy": proxy_problems,
    "durability": durability_problems,
    "mounts": missing_mount_sources,
    "prometheus": prometheus_problems,
    "grafana": grafana_problems,
}
