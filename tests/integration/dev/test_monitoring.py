"""`segflow dev --with-monitoring` for real: its Prometheus scrapes every role and holds a
series of each, with the alert rules loaded; and every metric the dashboard and the alerts
name is one a role's live /metrics exports. One stack for both (a start costs ~20 s)."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import free_port
from tests.integration.dev.devstack import dev_env, running_dev
from tests.integration.dev.test_processes import _signed_order
from tests.integration.segmenter.processes import poll
from tests.promql import exported_names, metric_names

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "segflow.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
# A series each role exports from its start (or once the traffic below has run).
SERIES = {
    "ingest": 'segflow_ingest_requests_total{job="ingest", outcome="accepted"}',
    "segmenter": 'segflow_segmenter_changes_published_total{job="segmenter"}',
    "api": 'segflow_api_rules_refused_total{job="api"}',
    "tagger": 'segflow_tagger_parked_operations{job="tagger"}',
}


def dashboard_names() -> dict[str, set[str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {
        panel["title"]: {n for t in panel["targets"] for n in metric_names(t["expr"])}
        for panel in panels
        if panel["type"] != "row"
    }


def alert_names() -> dict[str, set[str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: metric_names(rule["expr"]) for g in groups for rule in g["rules"]}


async def query(client: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/query", params={"query": promql})
    assert answer.status_code == 200, answer.text
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


@pytest.mark.timeout(240)
async def test_prometheus_scrapes_every_role_and_every_charted_metric_is_exported(
    server_tmp_path: Path,
) -> None:
    env = dev_env(
        SEGFLOW_PROMETHEUS_PORT=str(free_port()),
        SEGFLOW_PROMETHEUS_SCRAPE_INTERVAL_SECONDS="0.5",
        SEGFLOW_SEGMENTER_PROCESSES="1",
        SEGFLOW_CONSUMER_SESSION_TIMEOUT_MS="3000",
    )
    async with running_dev(server_tmp_path, env, ("--with-monitoring",)) as stack:
        prometheus = stack.url("prometheus")
        assert f"prometheus      {prometheus}" in stack.stdout()

        # A little traffic, so that the series born of use exist: an order that makes a VIP
        # (segment changes, tags, journeys) and a webhook refused.
        body, headers = _signed_order(207119551)
        async with httpx.AsyncClient(base_url=stack.url("ingest"), timeout=10) as client:
            answer = await client.post("/webhooks/shopify", content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            forged = {**headers, "X-Shopify-Hmac-Sha256": "AAAA"}
            answer = await client.post("/webhooks/shopify", content=body, headers=forged)
            assert answer.status_code == 401, answer.text

        roles = {
            "ingest": stack.url("ingest"),
            "segmenter": stack.url("segmenter_health"),
            "api": stack.url("api"),
            "tagger": stack.url("tagger"),
        }
        async with httpx.AsyncClient(timeout=10) as client:

            async def published() -> bool:
                text = (await client.get(f"{roles['segmenter']}/metrics")).text
                return "segflow_segmenter_changes_published_total 0.0" not in text

            await poll(published, 60, "the order's segment changes to be published", every=0.2)
            exported: set[str] = set()
            for url in roles.values():
                answer = await client.get(f"{url}/metrics")
                assert answer.status_code == 200, url
                exported |= exported_names(answer.text)

        missing = {
            title: names - exported
            for title, names in dashboard_names().items()
            if names - exported
        }
        assert missing == {}, f"dashboard panels name metrics no role exports: {missing}"
        # `up` is Prometheus's own series of every target.
        missing = {
            alert: names - exported - {"up"}
            for alert, names in alert_names().items()
            if names - exported - {"up"}
        }
        assert missing == {}, f"alerts name metrics no role exports: {missing}"

        async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:

            async def every_role_scraped() -> bool:
                for job, series in SERIES.items():
                    if not await query(client, series):
                        return False
                    up = await query(client, f'up{{job="{job}"}}')
                    if not up or any(float(r["value"][1]) != 1 for r in up):
                        return False
                return True

            await poll(every_role_scraped, 60, "a series of every role in Prometheus", every=0.5)
            [accepted] = await query(client, SERIES["ingest"])
            assert float(accepted["value"][1]) >= 1
            rules = (await client.get("/api/v1/rules")).json()["data"]["groups"]
            loaded = {rule["name"] for group in rules for rule in group["rules"]}
            assert loaded == set(alert_names())
    # Its data stayed under the dev data dir; running_dev checked that it stopped with the rest.
    assert (stack.data_dir / "prometheus" / "data").is_dir()
