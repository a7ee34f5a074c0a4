"""`segflow dev --with-monitoring`'s Prometheus: every role scraped under its production job
name (each segmenter member its own target), the alert rules loaded, its files under the dev
data dir, and a missing binary a clear error before anything starts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import Settings
from services.dev.monitoring import (
    ALERT_RULES,
    MonitoringUnavailableError,
    prometheus_binary,
    prometheus_role,
)

SEGFLOW = str(Path(sys.executable).with_name("segflow"))


def test_every_role_is_a_job_and_every_segmenter_member_a_target(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / ".segflow",
        ingest_port=18000,
        api_port=18001,
        tagger_port=18002,
        segmenter_health_port=18010,
        segmenter_processes=3,
        prometheus_port=19090,
        prometheus_scrape_interval_seconds=0.5,
    )
    role = prometheus_role(settings, "/usr/bin/prometheus")
    assert role.command is not None
    flags = dict(arg.split("=", 1) for arg in role.command[1:])
    directory = (tmp_path / ".segflow" / "prometheus").resolve()
    assert flags["--config.file"] == str(directory / "prometheus.yml")
    assert flags["--storage.tsdb.path"] == str(directory / "data")
    assert flags["--web.listen-address"] == "127.0.0.1:19090"
    assert role.shared_port == 19090
    assert role.ready_url(0) == "http://127.0.0.1:19090/-/ready"

    config = json.loads(Path(flags["--config.file"]).read_text())
    assert config["global"] == {"scrape_interval": "500ms", "evaluation_interval": "500ms"}
    assert config["rule_files"] == [str(ALERT_RULES)]
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert jobs == {
        "ingest": ["127.0.0.1:18000"],
        "segmenter": ["127.0.0.1:18010", "127.0.0.1:18011", "127.0.0.1:18012"],
        "api": ["127.0.0.1:18001"],
        "tagger": ["127.0.0.1:18002"],
    }


def test_prometheus_missing_from_path_is_an_error_naming_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MonitoringUnavailableError, match="apt-get install prometheus"):
        prometheus_binary()


def test_segflow_dev_with_monitoring_stops_before_starting_anything_without_prometheus(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [SEGFLOW, "dev", "--with-monitoring"],
        cwd=tmp_path,
        env={"PATH": str(tmp_path), "SEGFLOW_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "apt-get install prometheus" in result.stdout
    # Nothing was started: not even the data directory.
    assert not (tmp_path / ".segflow").exists()
