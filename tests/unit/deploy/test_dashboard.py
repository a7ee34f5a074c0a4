"""The Grafana dashboard is provisionable (one data source by its fixed uid, unique panel ids,
panels on the 24-column grid) and covers what an operator watches. That every metric it names
is exported is checked against a live stack: tests/integration/dev/test_monitoring.py."""

import json
from pathlib import Path
from typing import Any

from tests.promql import metric_names

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "segflow.json"
# deploy/grafana/provisioning/datasources names the Prometheus data source with this uid.
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return found


def test_every_panel_queries_the_provisioned_prometheus_and_fits_the_grid() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    for panel in panels():
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert metric_names(target["expr"]), target["expr"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    named = {
        name
        for panel in panels()
        for t in panel.get("targets", [])
        for name in metric_names(t["expr"])
    }
    wanted = {
        "segflow_ingest_events_total",  # throughput
        "segflow_segmenter_events_total",
        "segflow_segmenter_consumer_lag",  # lag
        "segflow_tagger_consumer_lag",
        "segflow_segmenter_end_to_end_seconds_bucket",  # latency percentiles
        "segflow_segment_members",  # segment sizes
        "segflow_segment_changes_total",  # entries and exits
        "segflow_tagger_tag_operations_total",  # tag activity
        "segflow_tagger_emails_total",  # email activity
        "segflow_shopify_bucket_available",  # throttle levels
        "segflow_shopify_throttle_wait_seconds_total",
    }
    assert wanted - named == set()
