"""Checks of the Kubernetes manifests under deploy/k8s/, each a function from the parsed
documents to the problems it finds (empty: none), so a test can run it on the real files and
on a broken copy."""

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kubernetes_validate
import yaml

from tests.unit.deploy.settings_env import (
    ONE_SHOT,
    REPO,
    ROLE_PORTS,
    SAMPLE_DEFAULT,
    SAMPLE_VALUES,
    secret_env_names,
    settings_env_names,
)

Doc = dict[str, Any]

MANIFESTS = REPO / "deploy" / "k8s"
# The Kubernetes version the manifests are validated against (kubernetes-validate ships the
# schemas, so this runs offline).
K8S_VERSION = "1.35.0"
SECRET = "segflow-secrets"
CONFIG_MAP = "segflow-settings"
# The roles others call, so they need a Service; the segmenter serves only its probes and
# metrics, which reach its pods directly.
SERVED = {"ingest", "api", "tagger"}
# Memory requests cover the benchmark's peak RSS of the role with half again as headroom,
# and limits leave at least twice the request.
REQUEST_OVER_RSS = 1.5
LIMIT_OVER_REQUEST = 2.0
RSS_FILE = REPO / "bench" / "results" / "latest.json"
QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$")
UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def load() -> list[Doc]:
    """Every document of every manifest, in file order."""
    docs: list[Doc] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        with open(path, encoding="utf-8") as f:
            docs.extend(doc for doc in yaml.safe_load_all(f) if doc)
    return docs


def name(doc: Mapping[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc.get("kind") == kind]


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = pod_spec(doc).get("containers", [])
    return found


def role(doc: Mapping[str, Any]) -> str | None:
    """The `segflow` command a workload's (first) container runs."""
    if doc.get("kind") not in {"Deployment", "Job"} or not containers(doc):
        return None
    args = containers(doc)[0].get("args") or []
    return str(args[0]) if args else None


def workloads(docs: list[Doc]) -> Iterator[tuple[Doc, str]]:
    for doc in docs:
        cmd = role(doc)
        if cmd is not None:
            yield doc, cmd


def deployment(docs: list[Doc], cmd: str) -> Doc | None:
    return next((d for d, r in workloads(docs) if r == cmd and d["kind"] == "Deployment"), None)


def settings_port(cmd: str) -> int:
    from services.common.settings import Settings

    return int(Settings.model_fields[ROLE_PORTS[cmd]].default)


def container_port(container: Mapping[str, Any], port: object) -> int | None:
    """A probe's or Service's port (a number or a port's name) as the container's number."""
    for entry in container.get("ports") or []:
        if port in (entry.get("name"), entry.get("containerPort")):
            return int(entry["containerPort"])
    return None


def quantity(text: object) -> int:
    match = QUANTITY.match(str(text))
    if match is None:
        raise ValueError(f"unreadable quantity {text!r}")
    return int(float(match[1]) * UNITS[match[2]])


def peak_rss_bytes(cmd: str) -> float:
    """The highest RSS any process of the role reached in the last benchmark run (MB: 10^6)."""
    with open(RSS_FILE, encoding="utf-8") as f:
        rss: dict[str, float] = json.load(f)["rss_mb"]
    figures = [mb for key, mb in rss.items() if re.fullmatch(rf"segflow {cmd}( #\d+)?", key)]
    if not figures:
        raise LookupError(f"{RSS_FILE.name} has no RSS of `segflow {cmd}`")
    return max(figures) * 1e6


def schema_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{name(doc)}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{name(doc)}: {exc.message}")
    return problems


def kind_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for doc in docs:
        if doc.get("kind") == "ServiceMonitor":
            problems.append(f"{name(doc)}: Prometheus finds pods by annotation, no ServiceMonitor")
        if doc.get("kind") == "Secret":
            problems.append(f"{name(doc)}: secrets are created by the operator, never committed")
    return problems


def workload_problems(docs: list[Doc]) -> list[str]:
    problems = [
        f"no Deployment runs `segflow {cmd}`" for cmd in ROLE_PORTS if deployment(docs, cmd) is None
    ]
    for cmd in sorted(ONE_SHOT):
        jobs = [d for d, r in workloads(docs) if r == cmd and d["kind"] == "Job"]
        if not jobs:
            problems.append(f"no Job runs `segflow {cmd}`")
        for job in jobs:
            if pod_spec(job).get("restartPolicy") not in {"Never", "OnFailure"}:
                problems.append(f"{name(job)}: a Job's pods must not restart forever")
    return problems


def probe_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for cmd in ROLE_PORTS:
        doc = deployment(docs, cmd)
        if doc is None:
            continue
        container = containers(doc)[0]
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (container.get(probe) or {}).get("httpGet") or {}
            port = container_port(container, get.get("port"))
            if get.get("path") != path or port != settings_port(cmd):
                problems.append(
                    f"{name(doc)}: {probe} is not GET {path} on port {settings_port(cmd)}"
                )
    return problems


def resource_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for doc, cmd in workloads(docs):
        for container in containers(doc):
            requests = (container.get("resources") or {}).get("requests") or {}
            limits = (container.get("resources") or {}).get("limits") or {}
            missing = {"cpu", "memory"} - set(requests)
            if missing:
                problems.append(f"{name(doc)}: no {' or '.join(sorted(missing))} request")
                continue
            if doc["kind"] != "Deployment":
                continue
            memory = quantity(requests["memory"])
            rss = peak_rss_bytes(cmd)
            if memory < REQUEST_OVER_RSS * rss:
                problems.append(
                    f"{name(doc)}: memory request {requests['memory']} is under "
                    f"{REQUEST_OVER_RSS} x the measured peak RSS ({rss / 1e6:.0f} MB)"
                )
            if "memory" not in limits or quantity(limits["memory"]) < LIMIT_OVER_REQUEST * memory:
                problems.append(
                    f"{name(doc)}: memory limit {limits.get('memory')} is under "
                    f"{LIMIT_OVER_REQUEST} x its request"
                )
    return problems


def _selects(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    wanted = selector.get("matchLabels", selector) or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _pod_labels(doc: Mapping[str, Any]) -> dict[str, Any]:
    labels: dict[str, Any] = doc["spec"]["template"]["metadata"].get("labels", {})
    return labels


def disruption_problems(docs: list[Doc]) -> list[str]:
    problems = []
    budgets = of_kind(docs, "PodDisruptionBudget")
    for cmd in ROLE_PORTS:
        doc = deployment(docs, cmd)
        if doc is None:
            continue
        mine = [b for b in budgets if _selects(b["spec"].get("selector", {}), _pod_labels(doc))]
        if len(mine) != 1:
            problems.append(f"{name(doc)}: {len(mine)} PodDisruptionBudgets select its pods")
            continue
        floor = mine[0]["spec"].get("minAvailable")
        if isinstance(floor, int) and floor >= doc["spec"].get("replicas", 1):
            problems.append(f"{name(mine[0])}: minAvailable {floor} would block every drain")
    return problems


def service_problems(docs: list[Doc]) -> list[str]:
    problems = []
    services = of_kind(docs, "Service")
    for cmd in sorted(SERVED):
        doc = deployment(docs, cmd)
        if doc is None:
            continue
        container = containers(doc)[0]
        ok = any(
            _selects(s["spec"].get("selector", {}), _pod_labels(doc))
            and any(
                container_port(container, p.get("targetPort", p.get("port"))) == settings_port(cmd)
                for p in s["spec"].get("ports", [])
            )
            for s in services
        )
        if not ok:
            problems.append(f"{name(doc)}: no Service reaches its port {settings_port(cmd)}")
    return problems


def annotation_problems(docs: list[Doc]) -> list[str]:
    problems = []
    for cmd in ROLE_PORTS:
        doc = deployment(docs, cmd)
        if doc is None:
            continue
        notes = doc["spec"]["template"]["metadata"].get("annotations") or {}
        wanted = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(settings_port(cmd)),
            "prometheus.io/path": "/metrics",
        }
        for key, value in wanted.items():
            if notes.get(key) != value:
                problems.append(f"{name(doc)}: pod annotation {key} is not {value!r}")
    return problems


def _config_data(docs: list[Doc], config_map: str) -> dict[str, str]:
    for doc in of_kind(docs, "ConfigMap"):
        if doc["metadata"]["name"] == config_map:
            return {str(k): str(v) for k, v in (doc.get("data") or {}).items()}
    return {}


def env_name_problems(docs: list[Doc]) -> list[str]:
    known = settings_env_names()
    problems = [
        f"{name(doc)}: {key} is no setting segflow reads"
        for doc in of_kind(docs, "ConfigMap")
        for key in doc.get("data") or {}
        if key.upper() not in known
    ]
    for doc, _ in workloads(docs):
        for container in containers(doc):
            for entry in container.get("env") or []:
                if entry["name"].upper() not in known:
                    problems.append(f"{name(doc)}: {entry['name']} is no setting segflow reads")
    return problems


def secret_problems(docs: list[Doc]) -> list[str]:
    """Secret settings come from the Secret, each under its own name; never from a value
    written in a manifest or the ConfigMap."""
    secrets = secret_env_names()
    problems = [
        f"{name(doc)}: {key} is a secret in a ConfigMap"
        for doc in of_kind(docs, "ConfigMap")
        for key in doc.get("data") or {}
        if key.upper() in secrets
    ]
    for doc, _ in workloads(docs):
        for container in containers(doc):
            for entry in container.get("env") or []:
                ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
                if entry["name"].upper() in secrets and "value" in entry:
                    problems.append(f"{name(doc)}: {entry['name']} is written in the manifest")
                elif ref and (ref.get("name") != SECRET or ref.get("key") != entry["name"]):
                    problems.append(
                        f"{name(doc)}: {entry['name']} is not key {entry['name']} of {SECRET}"
                    )
    return problems


def image_problems(docs: list[Doc], version: str, uid: int) -> list[str]:
    problems = []
    for doc, _ in workloads(docs):
        security = pod_spec(doc).get("securityContext") or {}
        if security.get("runAsNonRoot") is not True or security.get("runAsUser") != uid:
            problems.append(f"{name(doc)}: does not run as non-root uid {uid} (the image's)")
        for container in containers(doc):
            if container.get("image") != f"segflow:{version}":
                problems.append(
                    f"{name(doc)}: image {container.get('image')!r} is not segflow:{version}"
                )
            if (container.get("securityContext") or {}).get(
                "allowPrivilegeEscalation"
            ) is not False:
                problems.append(f"{name(doc)}: allows privilege escalation")
    return problems


def environment(docs: list[Doc], doc: Mapping[str, Any]) -> dict[str, str]:
    """A workload's environment, the Secret's keys given sample values."""
    env: dict[str, str] = {}
    for container in containers(doc)[:1]:
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef") or {}
            env.update(_config_data(docs, ref.get("name", "")))
        for entry in container.get("env") or []:
            if "value" in entry:
                env[entry["name"]] = str(entry["value"])
            else:
                env[entry["name"]] = SAMPLE_VALUES.get(entry["name"], SAMPLE_DEFAULT)
    return env


CHECKS: dict[str, Callable[[list[Doc]], list[str]]] = {
    "schema": schema_problems,
    "kinds": kind_problems,
    "workloads": workload_problems,
    "probes": probe_problems,
    "resources": resource_problems,
    "disruption budgets": disruption_problems,
    "services": service_problems,
    "annotations": annotation_problems,
    "env names": env_name_problems,
    "secrets": secret_problems,
}
