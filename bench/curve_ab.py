"""The cost curve's two ends side by side on one PostgreSQL, alternated, so a shared machine's
load falls on both alike (the full run measures its points minutes apart).

    .venv/bin/python -m bench.curve_ab --small 10000 --large 1000000 [--rounds 3] [--events 3000]

Seeds a shop of `--small` and one of `--large` stored customers (SQL-generated history, as
`make bench` does; `--pg DIR` reuses a data directory from an earlier run), then times the
production batch path on new orders for each, A B A B. Prints JSON.
"""

import argparse
import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench import offline
from services.common.db import migrate
from services.common.shops import create_shop
from services.dev.embedded import EmbeddedPostgres
from services.segmenter.storage.segments import install_templates

# Past the indices the full run's cost curve used (from offline.NEW_ORDER_INDEX).
AB_ORDER_INDEX = 700


async def _shop(dsn: str, domain: str, size: int, now: datetime) -> tuple[int, int]:
    """The shop's id and how many customers it stores, seeding it to `size` if it is new."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        shop_id = await conn.fetchval("SELECT id FROM shops WHERE domain = $1", domain)
        if shop_id is None:
            shop_id = (await create_shop(conn, domain)).shop_id
            await install_templates(conn, shop_id, now)
        stored = await conn.fetchval("SELECT count(*) FROM customers WHERE shop_id = $1", shop_id)
    finally:
        await conn.close()
    if stored < size:
        await offline.seed(dsn, shop_id, range(stored, size), now, with_products=stored == 0)
    return shop_id, size


async def main(args: argparse.Namespace) -> None:
    data_dir = args.pg or Path(tempfile.mkdtemp(prefix="bench-curve-ab-")) / "pg"
    postgres = EmbeddedPostgres(data_dir)
    dsn = postgres.start()
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        shops = {
            "small": await _shop(dsn, "bench-ab-small.myshopify.com", args.small, now),
            # The full run's curve shop: its data directory (--pg) is reused as it is.
            "large": await _shop(dsn, "bench-curve.myshopify.com", args.large, now),
        }
        rates: dict[str, list[float]] = {"small": [], "large": []}
        taken: dict[str, dict[int, int]] = {"small": {}, "large": {}}
        for round_ in range(args.rounds):
            for name, (shop_id, size) in shops.items():
                # Past the indices earlier runs used, so every order is new.
                events = offline.new_order_events(
                    args.seed + round_, size, args.events, now, taken[name], AB_ORDER_INDEX
                )
                rate = await offline.segmenter_rate(dsn, shop_id, events, now, batch=500)
                rates[name].append(round(rate, 1))
        best = {name: max(values) for name, values in rates.items()}
        sys.stdout.write(
            json.dumps(
                {
                    "small": args.small,
                    "large": args.large,
                    "events_per_round": args.events,
                    "events_per_s": rates,
                    "best_ratio_large_to_small": round(best["large"] / best["small"], 2),
                }
            )
            + "\n"
        )
    finally:
        postgres.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=40)
    parser.add_argument("--pg", type=Path, help="reuse this PostgreSQL data directory")
    asyncio.run(main(parser.parse_args()))
