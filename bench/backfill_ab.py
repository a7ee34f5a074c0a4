"""A new segment's backfill at several chunk sizes, alternated on one PostgreSQL, so a shared
machine's load falls on each alike.

    .venv/bin/python -m bench.backfill_ab [--customers 200000] [--chunks 5000,25000,100000]
                                          [--rounds 3] [--pg DIR]

Seeds a shop of `--customers` stored customers (SQL-generated history, as `make bench` does;
`--pg DIR` reuses a data directory), then times the create path's backfill at each chunk size
(SEGFLOW_BACKFILL_CHUNK_SIZE), round after round, each rolled back. Prints JSON.
"""

import argparse
import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import offline
from bench.curve_ab import _shop
from services.dev.embedded import EmbeddedPostgres
from services.segmenter.storage.backfill import BackfillOptions


async def main(args: argparse.Namespace) -> None:
    data_dir = args.pg or Path(tempfile.mkdtemp(prefix="bench-backfill-ab-")) / "pg"
    postgres = EmbeddedPostgres(data_dir)
    dsn = postgres.start()
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        shop_id, stored = await _shop(dsn, "bench-curve.myshopify.com", args.customers, now)
        seconds: dict[int, list[float]] = {chunk: [] for chunk in args.chunks}
        for round_number in range(args.rounds):
            for chunk in args.chunks:
                measured = await offline.backfill_seconds(
                    dsn, shop_id, now, f"ab-{round_number}-{chunk}", BackfillOptions(chunk=chunk)
                )
                seconds[chunk].append(measured["seconds"])
                sys.stderr.write(f"chunk {chunk}: {measured}\n")
        best = {chunk: min(values) for chunk, values in seconds.items()}
        fastest = min(best.values())
        sys.stdout.write(
            json.dumps(
                {
                    "customers": stored,
                    "seconds": {str(chunk): values for chunk, values in seconds.items()},
                    "best_over_fastest": {
                        str(chunk): round(value / fastest, 2) for chunk, value in best.items()
                    },
                },
                indent=2,
            )
            + "\n"
        )
    finally:
        postgres.stop()


def _chunks(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.backfill_ab")
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--chunks", type=_chunks, default=[5_000, 25_000, 100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", type=Path)
    asyncio.run(main(parser.parse_args()))
