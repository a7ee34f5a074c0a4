"""`segflow dev --with-monitoring`: a local Prometheus (Debian's binary, found on PATH) scraping
every role of the dev stack under the production job names, with the alert rules loaded.

It runs as one more supervised child, so it starts and stops with the stack.
"""

import json
import shutil
from pathlib import Path

from services.common.settings import Settings
from services.dev.supervisor import Role

# The checkout's rules (the same file production loads); `segflow dev` runs from a checkout.
ALERT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


class MonitoringUnavailableError(RuntimeError):
    """Prometheus or the alert rules cannot be found."""


def prometheus_binary() -> str:
    """The `prometheus` command on PATH, or an error saying how to install it."""
    found = shutil.which("prometheus")
    if found is None:
        raise MonitoringUnavailableError(
            "--with-monitoring needs Prometheus: install it (Debian: apt-get install prometheus)"
        )
    if not ALERT_RULES.is_file():
        raise MonitoringUnavailableError(f"--with-monitoring: no alert rules at {ALERT_RULES}")
    return found


def scrape_targets(settings: Settings) -> dict[str, list[str]]:
    """Each role's job name and the addresses of its /metrics (each segmenter member its own)."""
    host = settings.host
    return {
        "ingest": [f"{host}:{settings.ingest_port}"],
        "segmenter": [
            f"{host}:{settings.segmenter_health_port + index}"
            for index in range(settings.segmenter_processes)
        ],
        "api": [f"{host}:{settings.api_port}"],
        "tagger": [f"{host}:{settings.tagger_port}"],
    }


def prometheus_config(settings: Settings, rules: Path = ALERT_RULES) -> dict[str, object]:
    """The configuration: every role scraped, the alert rules evaluated, at one interval."""
    interval = f"{round(settings.prometheus_scrape_interval_seconds * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in scrape_targets(settings).items()
        ],
    }


def prometheus_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.prometheus_port}"


def prometheus_role(settings: Settings, binary: str) -> Role:
    """Prometheus as a supervised child; its configuration and data under the dev data dir."""
    directory = (settings.data_dir / "prometheus").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(json.dumps(prometheus_config(settings), indent=2) + "\n")
    url = prometheus_url(settings)
    return Role(
        "prometheus",
        ready_url=lambda index: f"{url}/-/ready",
        # Checked free before anything starts, and listened on by this process when ready.
        shared_port=settings.prometheus_port,
        command=(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address={settings.host}:{settings.prometheus_port}",
            "--log.level=warn",
        ),
    )
