"""`python -m bench [--quick]`: the issue-12 benchmark; writes latest.json, prepends RESULTS.md.

.venv/bin/python -m bench --quick           # under 5 minutes on 2 cores
.venv/bin/python -m bench                   # full: 1M stored customers (long)
"""

import argparse
import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from bench import harness, report
from bench.stack import Ports

HERE = Path(__file__).resolve().parent


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under 5 minutes")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--no-results-md", action="store_true", help="leave RESULTS.md alone")
    parser.add_argument("--title", default="", help="what this run measured (RESULTS.md)")
    parser.add_argument("--workdir", type=Path, help="data and request files (default: temp)")
    parser.add_argument("--ingest-port", type=int, default=8600)
    parser.add_argument("--api-port", type=int, default=8601)
    parser.add_argument("--health-port", type=int, default=8602)
    parser.add_argument("--broker-port", type=int, default=9692)
    parser.add_argument("--tagger-port", type=int, default=8604)
    parser.add_argument("--standin-port", type=int, default=8605)
    parser.add_argument("--smtp-port", type=int, default=8606)
    parser.add_argument("--e2e-customers", type=int, help="customers whose webhooks are replayed")
    parser.add_argument(
        "--curve-sizes", help="stored customers per cost-curve point, e.g. 1000,5000"
    )
    parser.add_argument("--curve-events", type=int)
    parser.add_argument("--latency-seconds", type=float)
    parser.add_argument("--lookup-seconds", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("bench").setLevel(logging.INFO)
    # SIGTERM unwinds like Ctrl-C, so the stack and PostgreSQL this run started are stopped.
    signal.signal(signal.SIGTERM, _interrupt)

    ports = Ports(
        args.ingest_port,
        args.api_port,
        args.broker_port,
        args.health_port,
        args.tagger_port,
        args.standin_port,
        args.smtp_port,
    )
    command = "python -m bench" + (" --quick" if args.quick else "")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    config = harness.Config.preset(args.quick, workdir, ports, command)
    overrides: dict[str, object] = {}
    if args.e2e_customers:
        overrides["e2e_customers"] = args.e2e_customers
    if args.curve_sizes:
        overrides["curve_sizes"] = tuple(int(x) for x in args.curve_sizes.split(","))
    if args.curve_events:
        overrides["curve_events"] = args.curve_events
    if args.latency_seconds:
        overrides["latency_seconds"] = args.latency_seconds
    if args.lookup_seconds:
        overrides["lookup_seconds"] = args.lookup_seconds
    if overrides:
        config = replace(config, **overrides)  # type: ignore[arg-type]
    try:
        results = asyncio.run(harness.run(config))
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report.write_latest(args.out, results)
    if not args.no_results_md:
        title = args.title or ("make bench QUICK=1" if args.quick else "make bench")
        report.prepend_results(args.results_md, report.markdown_entry(results, title))
    sys.stdout.write(f"wrote {args.out}\n")


if __name__ == "__main__":
    main()
