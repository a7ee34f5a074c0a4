"""The machine a run was on, latest.json, and the dated table prepended to RESULTS.md."""

import json
import os
import platform
from pathlib import Path
from typing import Any

import psutil

# (key, label, unit, target) rows of the RESULTS.md table, in the order.
TABLE = (
    ("e2e_events_per_s", "end to end, sustained", "events/s", ">= 5,000"),
    ("ingest_req_per_s", "ingest accepted while the pipeline ran", "req/s", ""),
    ("latency_p50_ms", "receipt -> change published at 500/s, p50", "ms", ""),
    ("latency_p99_ms", "receipt -> change published at 500/s, p99", "ms", "< 100"),
    ("latency_50_per_s_p50_ms", "receipt -> change published at 50/s, p50", "ms", ""),
    ("latency_50_per_s_p99_ms", "receipt -> change published at 50/s, p99", "ms", ""),
    ("lookup_p50_ms", "segments lookup, 8 clients, p50", "ms", ""),
    ("lookup_p99_ms", "segments lookup, 8 clients, p99", "ms", "< 5"),
    ("backfill_100k_s", "backfill of one segment, 100k customers", "s", ""),
    ("backfill_1m_s", "backfill of one segment, 1M customers", "s", "< 10"),
    ("naive_events_per_s", "naive: every segment's SQL per event", "events/s", ""),
    ("engine_evals_per_s", "business-rules engine (run_all)", "evals/s", ""),
    ("compiled_evals_per_s", "compiled rules", "evals/s", ""),
)


def machine() -> dict[str, Any]:
    """Cores, CPU model, RAM and the load average now."""
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "model": model,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_latest(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_entry(results: dict[str, Any], title: str) -> str:
    """One dated RESULTS.md section with the figures, the curve, memory and the machine."""
    m = results["machine"]
    lines = [
        f"## {results['date'][:10]}: {title}",
        "",
        f"- Commit `{results.get('commit') or 'unknown'}`; command `{results['command']}`"
        f" ({'QUICK' if results['quick'] else 'full'}, {results['seconds']:.0f} s).",
        f"- Machine: {m['cores']} cores {m['model']}, {m['ram_gb']} GiB; load average "
        f"{results['load_before']} before, {results['load_after']} after.",
        "",
        "| figure | value | unit | target |",
        "| --- | --- | --- | --- |",
    ]
    for key, label, unit, target in TABLE:
        lines.append(f"| {label} | {_cell(results.get(key))} | {unit} | {target} |")
    curve = results.get("cost_curve") or []
    if curve:
        lines += ["", "Cost curve (segmenter events/s with customers already stored):", ""]
        lines += [
            "| stored customers | stored orders | seed s | events/s |",
            "| --- | --- | --- | --- |",
        ]
        for point in curve:
            lines.append(
                f"| {point['customers']:,} | {point['orders']:,} | {point['seed_seconds']:.1f}"
                f" | {point['events_per_s']:,.0f} |"
            )
        if results.get("cost_curve_ratio") is not None:
            lines.append("")
            lines.append(
                f"Largest / smallest: {results['cost_curve_ratio']:.2f} (target: >= 0.80)."
            )
    rss = results.get("rss_mb") or {}
    if rss:
        lines += [
            "",
            "Memory (MB; RSS, PostgreSQL as the sum of its processes' PSS): "
            + ", ".join(f"{k} {v:,.0f}" for k, v in rss.items())
            + ".",
        ]
    notes = results.get("notes") or []
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def prepend_results(path: Path, entry: str) -> None:
    """Put the entry first, under the file's header (everything before the first `## `)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    cut = text.find("\n## ")
    head, rest = (text, "") if cut < 0 else (text[: cut + 1], text[cut + 1 :])
    path.write_text(head.rstrip("\n") + "\n\n" + entry + ("\n" + rest if rest else ""))
