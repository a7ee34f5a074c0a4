"""Tagging 100k customers on the Shopify stand-in: single mutations vs one bulk mutation.

    .venv/bin/python -m bench.tagger_shopify [--customers 100000] [--slice 600]
        [--bucket-size 2000] [--restore-rate 100] [--concurrency 8] [--unpaced-slice 3000]

The stand-in runs as its own process (`segflow shopify-standin` on a free port), so the
client and the server do not share one event loop. Prints one JSON object.

- single: tagsAdd one customer at a time through AdminClient with the given bucket (100
  points/s, 2000 max by default: a Standard plan's figures). Pacing makes the full run last
  hours, so a slice of --slice calls is measured: the burst the full bucket allows, then the
  steady rate the restore rate allows; 100k is extrapolated from those two measured figures
  (and stated as extrapolated). `unpaced` measures the same calls against a bucket too big
  to bind: the cost of the calls themselves on this machine.
- bulk: run_bulk_tags for every customer (staged upload, bulkOperationRunMutation, polling,
  the result file), measured whole.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from services.tagger.shopify import AdminClient
from services.tagger.shopify.transport import RetryPolicy

VERSION = "2026-04"


@dataclass(frozen=True)
class Config:
    customers: int = 100_000
    slice: int = 600
    bucket_size: float = 2000
    restore_rate: float = 100
    concurrency: int = 8
    unpaced_slice: int = 3000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def standin_process() -> AsyncIterator[str]:
    """`segflow shopify-standin` as a child process on a free port; stopped with SIGTERM."""
    port = _free_port()
    env = {
        **os.environ,
        "SEGFLOW_SHOPIFY_STANDIN_PORT": str(port),
        "SEGFLOW_LOG_LEVEL": "WARNING",
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "shopify-standin"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get(f"{url}/_standin/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the stand-in did not start")
                await asyncio.sleep(0.05)
        yield url
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def _shop(
    http: httpx.AsyncClient, url: str, domain: str, size: float, rate: float, customers: int
) -> str:
    token = f"shpat_bench_{domain.split('.')[0]}"
    shop = {
        "domain": domain,
        "access_token": token,
        "webhook_secret": "bench",
        "bucket_size": size,
        "restore_rate": rate,
    }
    (await http.post(f"{url}/_standin/shops", json=shop)).raise_for_status()
    generate = {"generate": {"first_id": 1, "count": customers}}
    seeded = await http.post(f"{url}/_standin/shops/{domain}/customers", json=generate, timeout=120)
    seeded.raise_for_status()
    return token


async def _tag_each(client: AdminClient, ids: Sequence[int], concurrency: int) -> list[float]:
    """tagsAdd every id, `concurrency` at a time; the moment (monotonic) each call ended."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for customer_id in ids:
        queue.put_nowait(customer_id)
    finished: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            customer_id = queue.get_nowait()
            result = await client.tags_add(customer_id, ["bench-single"])
            if not result.ok:
                raise RuntimeError(f"tagsAdd failed: {result.user_errors}")
            finished.append(time.monotonic())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sorted(finished)


async def measure_single(url: str, http: httpx.AsyncClient, config: Config) -> dict[str, Any]:
    domain = "single.myshopify.com"
    token = await _shop(
        http, url, domain, config.bucket_size, config.restore_rate, config.customers
    )
    policy = RetryPolicy(max_attempts=10)
    async with AdminClient(domain, token, VERSION, url, policy=policy) as client:
        started = time.monotonic()
        ends = await _tag_each(client, range(1, config.slice + 1), config.concurrency)
    log = (await http.get(f"{url}/_standin/shops/{domain}/requests")).json()["requests"]
    throttled = sum(1 for entry in log if entry["outcome"] == "throttled")
    # The burst: calls the full bucket paid for before pacing set in (cost 10 each). Points
    # restored during the burst pay for some calls after it, so the steady rate is measured
    # on the second half of the calls after the burst only.
    burst_calls = min(int(config.bucket_size // 10), config.slice)
    burst_seconds = ends[burst_calls - 1] - started
    after_burst = ends[burst_calls:]
    steady = after_burst[len(after_burst) // 2 :]
    steady_rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else None
    extrapolated = None
    if steady_rate:
        extrapolated = burst_seconds + (config.customers - burst_calls) / steady_rate
    return {
        "bucket_size": config.bucket_size,
        "restore_rate": config.restore_rate,
        "concurrency": config.concurrency,
        "measured_calls": config.slice,
        "measured_seconds": round(ends[-1] - started, 3),
        "burst_calls": burst_calls,
        "burst_seconds": round(burst_seconds, 3),
        "steady_calls_per_second": round(steady_rate, 3) if steady_rate else None,
        "throttled_answers": throttled,
        "customers": config.customers,
        "seconds_for_all": round(extrapolated, 1) if extrapolated else None,
        "seconds_for_all_is": "extrapolated from the measured burst and steady rate",
        "seconds_for_all_by_the_bucket_alone": round(
            (config.customers * 10 - config.bucket_size) / config.restore_rate, 1
        ),
    }


async def measure_unpaced(url: str, http: httpx.AsyncClient, config: Config) -> dict[str, Any]:
    domain = f"unpaced-{config.concurrency}.myshopify.com"
    calls = min(config.unpaced_slice, config.customers)
    token = await _shop(http, url, domain, 1e12, 1e12, calls)
    async with AdminClient(domain, token, VERSION, url) as client:
        started = time.monotonic()
        await _tag_each(client, range(1, calls + 1), config.concurrency)
        seconds = time.monotonic() - started
    return {
        "measured_calls": calls,
        "measured_seconds": round(seconds, 3),
        "calls_per_second": round(calls / seconds, 1),
        "seconds_for_all": round(config.customers * seconds / calls, 1),
        "seconds_for_all_is": "extrapolated linearly from the measured calls",
    }


async def measure_bulk(url: str, http: httpx.AsyncClient, config: Config) -> dict[str, Any]:
    domain = "bulk.myshopify.com"
    token = await _shop(
        http, url, domain, config.bucket_size, config.restore_rate, config.customers
    )
    lines = [(n, ["bench-bulk"]) for n in range(1, config.customers + 1)]
    async with AdminClient(domain, token, VERSION, url) as client:
        started = time.monotonic()
        result = await client.run_bulk_tags("add", lines)
        seconds = time.monotonic() - started
        sample = await client.customers_tags([1, config.customers // 2, config.customers])
    if result.applied != config.customers or any(t != ("bench-bulk",) for t in sample.values()):
        raise RuntimeError(f"the bulk run did not tag everyone: {result.applied} applied")
    return {
        "customers": config.customers,
        "seconds": round(seconds, 2),
        "customers_per_second": round(config.customers / seconds, 1),
        "status": result.status,
        "applied": result.applied,
        "failures": len(result.failures),
    }


async def run(config: Config) -> dict[str, Any]:
    """Every measurement against one stand-in process; the report as a dict."""
    async with standin_process() as url, httpx.AsyncClient(timeout=60) as http:
        bulk = await measure_bulk(url, http, config)
        unpaced = await measure_unpaced(url, http, config)
        single = await measure_single(url, http, config)
    return {
        "benchmark": "tagger_shopify",
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "single": single,
        "single_unpaced": unpaced,
        "bulk": bulk,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Config()
    parser.add_argument("--customers", type=int, default=defaults.customers)
    parser.add_argument("--slice", type=int, default=defaults.slice, help="single calls measured")
    parser.add_argument("--bucket-size", type=float, default=defaults.bucket_size)
    parser.add_argument("--restore-rate", type=float, default=defaults.restore_rate)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--unpaced-slice", type=int, default=defaults.unpaced_slice)
    args = parser.parse_args(argv)
    config = Config(
        customers=args.customers,
        slice=args.slice,
        bucket_size=args.bucket_size,
        restore_rate=args.restore_rate,
        concurrency=args.concurrency,
        unpaced_slice=args.unpaced_slice,
    )
    if config.slice <= config.bucket_size // 10 + 4:
        parser.error("--slice must be larger than the burst the bucket allows (bucket / 10)")
    report = asyncio.run(run(config))
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
