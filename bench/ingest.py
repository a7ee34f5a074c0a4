"""Ingest throughput: signed orders/create webhooks posted with bounded concurrency.

Run against a live stack (`make run` in another terminal):
    .venv/bin/python -m bench.ingest --webhook-secret SECRET [--count 5000] [--concurrency 32]
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid

import httpx

from services.common.signing import sign_webhook


def order_body(n: int) -> bytes:
    return json.dumps(
        {
            "id": 820982911946154508 + n,
            "email": f"c{n % 1000}@example.com",
            "created_at": "2025-03-01T10:00:00-05:00",
            "updated_at": "2025-03-01T10:00:00-05:00",
            "currency": "USD",
            "total_price": "129.90",
            "current_total_price": "129.90",
            "customer": {"id": 115310627314723954 + n % 1000},
            "line_items": [
                {
                    "id": n,
                    "product_id": 632910392,
                    "vendor": "Acme",
                    "quantity": 1,
                    "price": "129.90",
                }
            ],
        }
    ).encode()


async def run(url: str, shop: str, secret: str, count: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body = order_body(n)
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Shop-Domain": shop,
                "X-Shopify-Hmac-Sha256": sign_webhook(body, secret),
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "X-Shopify-Event-Id": str(uuid.uuid4()),
            }
            started = time.perf_counter()
            response = await client.post("/webhooks/shopify", content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": count,
        "ok": statuses.get(200, 0),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(count / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--shop", default="demo.myshopify.com")
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    result = asyncio.run(
        run(args.url, args.shop, args.webhook_secret, args.count, args.concurrency)
    )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
