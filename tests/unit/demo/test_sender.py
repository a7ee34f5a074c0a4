"""send_demo against a tiny real HTTP/1.1 server that checks signatures like the ingest does."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from services.common.signing import verify_webhook
from services.demo.sender import send_demo
from services.demo.stream import DemoWebhook, demo_stream

NOW = datetime(2025, 9, 1, 16, 30, tzinfo=UTC)
SECRET = "demo-webhook-secret"
SHOP = "segflow-demo.myshopify.com"
REASONS = {200: "OK", 401: "Unauthorized", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeIngest:
    """Answers 503 (Retry-After: `retry_after`) to the first `unavailable` requests, then 200
    or 401."""

    secret: str
    unavailable: int = 0
    retry_after: str = "0"
    requests: list[Request] = field(default_factory=list)
    open_connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        try:
            request = await read_request(reader)
            self.requests.append(request)
            signature = request.headers.get("x-shopify-hmac-sha256")
            extra = ""
            if not verify_webhook(request.body, self.secret, signature):
                status = 401
            elif len(self.requests) <= self.unavailable:
                status, extra = 503, f"Retry-After: {self.retry_after}\r\n"
            else:
                status = 200
            head = f"HTTP/1.1 {status} {REASONS[status]}\r\n{extra}"
            writer.write(f"{head}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self.open_connections -= 1


async def read_request(reader: asyncio.StreamReader) -> Request:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    method, path, _version = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, path, headers, body)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serving(ingest: FakeIngest) -> AsyncIterator[str]:
    server = await asyncio.start_server(ingest.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()
        await wait_until(lambda: ingest.open_connections == 0)


def some_webhooks(count: int) -> list[DemoWebhook]:
    stream = demo_stream(seed=5, now=NOW, customers=4)
    return stream[:count]


async def test_retries_a_503_and_delivers_every_webhook_with_its_headers() -> None:
    webhooks = some_webhooks(5)
    ingest = FakeIngest(SECRET, unavailable=1)
    async with serving(ingest) as base_url:
        report = await send_demo(base_url, SHOP, SECRET, webhooks)

    assert (report.sent, report.accepted, dict(report.rejected), report.failed) == (5, 5, {}, 0)
    assert len(ingest.requests) == 6  # the first webhook went twice
    assert ingest.requests[0] == ingest.requests[1]
    for webhook, request in zip(webhooks, ingest.requests[1:], strict=True):
        assert (request.method, request.path) == ("POST", "/webhooks/shopify")
        assert request.body == webhook.body
        headers = request.headers
        assert headers["content-type"] == "application/json"
        assert headers["x-shopify-topic"] == webhook.topic
        assert headers["x-shopify-shop-domain"] == SHOP
        assert verify_webhook(request.body, SECRET, headers["x-shopify-hmac-sha256"])
        assert headers["x-shopify-webhook-id"] == webhook.webhook_id
        assert headers["x-shopify-event-id"] == webhook.event_id
        assert headers["x-shopify-api-version"] == "2025-07"
        triggered = datetime.fromisoformat(headers["x-shopify-triggered-at"])
        assert abs(triggered - webhook.triggered_at).total_seconds() < 0.001


async def test_a_retry_after_in_other_digits_falls_back_to_the_backoff() -> None:
    # These pass str.isdigit() but not float(); httpx decodes the UTF-8 header bytes to them.
    for retry_after in ("²", "¹²"):
        ingest = FakeIngest(SECRET, unavailable=1, retry_after=retry_after)
        async with serving(ingest) as base_url:
            report = await send_demo(base_url, SHOP, SECRET, some_webhooks(1))
        assert (report.sent, report.accepted, report.failed) == (1, 1, 0)
        assert len(ingest.requests) == 2


async def test_counts_final_rejections_by_status() -> None:
    webhooks = some_webhooks(3)
    ingest = FakeIngest("another-secret")
    async with serving(ingest) as base_url, httpx.AsyncClient(timeout=5.0) as client:
        report = await send_demo(base_url, SHOP, SECRET, webhooks, client=client)

    assert (report.sent, report.accepted, dict(report.rejected), report.failed) == (
        3,
        0,
        {401: 3},
        0,
    )
    assert len(ingest.requests) == 3  # a 4xx is final: no retry


async def test_gives_up_after_bounded_attempts_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The port was free a moment ago and nothing listens on it now.
    report = await send_demo(
        f"http://127.0.0.1:{port}", SHOP, SECRET, some_webhooks(2), max_attempts=2
    )

    assert (report.sent, report.accepted, dict(report.rejected), report.failed) == (2, 0, {}, 2)
