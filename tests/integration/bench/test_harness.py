"""The benchmark harness end to end at a tiny size, against the real stack it starts."""

from dataclasses import replace
from pathlib import Path

import psutil

from bench import harness, report
from bench.stack import Ports
from tests.helpers import free_port

KEYS = (
    "e2e_events_per_s",
    "ingest_req_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_50_per_s_p50_ms",
    "latency_50_per_s_p99_ms",
    "lookup_p50_ms",
    "lookup_p99_ms",
    "backfill_100k_s",
    "naive_events_per_s",
    "engine_evals_per_s",
    "compiled_evals_per_s",
)


def _running_under(directory: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(directory) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


async def test_a_tiny_run_writes_every_key_with_a_sane_value_and_stops_everything(
    server_tmp_path: Path,
) -> None:
    ports = Ports(*(free_port() for _ in range(7)))
    config = replace(
        harness.Config.preset(True, server_tmp_path / "work", ports, "test"),
        e2e_customers=60,
        latency_rate=50.0,
        latency_seconds=0.6,
        lookup_seconds=1,
        curve_sizes=(100, 200),
        curve_events=100,
        naive_seconds=0.5,
        generated_backfill_rows=2000,
    )
    results = await harness.run(config)
    out = server_tmp_path / "latest.json"
    report.write_latest(out, results)

    assert _running_under(server_tmp_path) == []
    for key in KEYS:
        assert isinstance(results[key], int | float) and results[key] > 0, key
    assert results["latency_p50_ms"] <= results["latency_p99_ms"]
    assert results["lookup_p50_ms"] <= results["lookup_p99_ms"]
    assert results["backfill_1m_s"] is None and results["backfill_1m_s_reason"]
    e2e = results["e2e"]
    # Every webhook accepted, every distinct event processed, duplicates among them.
    assert e2e["accepted"] == e2e["deliveries"] and e2e["failed"] == 0
    assert e2e["duplicates"] + e2e["distinct_events"] == e2e["deliveries"]
    assert e2e["changes_read"] > 0
    assert results["latency"]["with_change"] == results["latency"]["sent"] > 0
    assert results["lookup"]["non2xx"] == 0
    assert [p["customers"] for p in results["cost_curve"]] == [100, 200]
    for point in results["cost_curve"]:
        assert point["events_per_s"] > 0 and point["orders"] >= point["customers"]
    assert results["database_mb"] > 0
    assert any(note.startswith("Database on disk with 200 customers") for note in results["notes"])
    labels = set(results["rss_mb"])
    assert {"broker", "postgres"} <= labels
    assert any(label.startswith("segflow ") for label in labels)
    assert results["machine"]["cores"] >= 1
    assert len(results["load_before"]) == 3
    assert results["compiled_evals_per_s"] > 0 and results["rules"]["segments"] >= 1
    assert out.read_text().startswith("{")
