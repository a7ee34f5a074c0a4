"""Real role processes (`segflow ingest|api|segmenter|tagger`) for the graceful-shutdown tests:
their environment, a SIGTERM timed to its exit, and an HTTP request held in flight by hand."""

import asyncio
import errno
import os
import signal
import subprocess
import time
from pathlib import Path

from services.common.settings import Settings
from tests.helpers import free_port
from tests.integration.segmenter.processes import SEGFLOW, SegmenterProcess

# The bound the tests give each role (SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS): long enough for a
# loaded role on 2 shared cores, short enough that a role stuck past it fails the test fast.
BOUND_SECONDS = 8.0


def role_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment of a role for this test's database, topics and groups, every port its
    own, with the shutdown bound of BOUND_SECONDS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGFLOW_")}
    env.update(
        DATABASE_URL=settings.database_url or "",
        KAFKA_BOOTSTRAP_SERVERS=settings.kafka_bootstrap_servers or "",
        SEGFLOW_TOPIC_EVENTS=settings.topic_events,
        SEGFLOW_TOPIC_SEGMENT_CHANGES=settings.topic_segment_changes,
        SEGFLOW_TOPIC_DEAD_LETTER=settings.topic_dead_letter,
        SEGFLOW_SEGMENTER_GROUP=settings.segmenter_group,
        SEGFLOW_TAGGER_GROUP=settings.tagger_group,
        SEGFLOW_INGEST_PORT=str(free_port()),
        SEGFLOW_API_PORT=str(free_port()),
        SEGFLOW_TAGGER_PORT=str(free_port()),
        SEGFLOW_SEGMENTER_HEALTH_PORT=str(free_port()),
        SEGFLOW_CONSUMER_SESSION_TIMEOUT_MS="2000",
        SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS=str(BOUND_SECONDS),
        SEGFLOW_RATE_LIMIT_READ_PER_SECOND="0",
        SEGFLOW_RATE_LIMIT_WRITE_PER_SECOND="0",
        SEGFLOW_RATE_LIMIT_EVENTS_PER_SECOND="0",
    )
    env.update(overrides)
    return env


_PORTS = {
    "ingest": "SEGFLOW_INGEST_PORT",
    "api": "SEGFLOW_API_PORT",
    "tagger": "SEGFLOW_TAGGER_PORT",
    "segmenter": "SEGFLOW_SEGMENTER_HEALTH_PORT",
}


class RoleProcess(SegmenterProcess):
    """One `segflow ROLE` process, probed on its own HTTP port; stderr goes to `log_path`."""

    def __init__(self, role: str, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path)
        self.role = role
        self.port = int(env[_PORTS[role]])
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> "RoleProcess":
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [SEGFLOW, self.role], env=self.env, stdout=log, stderr=log
            )
        return self

    def terminate(self) -> float:
        """Send SIGTERM; return when it was sent (time.monotonic)."""
        self.process.send_signal(signal.SIGTERM)
        return time.monotonic()

    async def exit_after(self, signalled: float, timeout: float) -> tuple[int, float]:
        """Wait up to `timeout` s for the exit; (exit code, seconds since `signalled`)."""
        code = await self.wait_exit(timeout)
        return code, time.monotonic() - signalled

    async def refuses_connections(self) -> bool:
        """True once a new TCP connection to its port is refused (for `poll`)."""
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            if exc.errno != errno.ECONNREFUSED:
                raise
            return True
        writer.close()
        await writer.wait_closed()
        return False


class HeldRequest:
    """An HTTP/1.1 request whose headers and first half of body are sent, the rest held back:
    a request in flight for as long as the test wants."""

    def __init__(self, port: int, method: str, path: str, headers: dict[str, str], body: bytes):
        self.port = port
        self.head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        ).encode("latin-1")
        self.body = body
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def begin(self) -> "HeldRequest":
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(self.head + self.body[: len(self.body) // 2])
        await writer.drain()
        self._streams = reader, writer
        return self

    async def finish(self, timeout: float = 10) -> tuple[int, bytes]:
        """Send the rest of the body; (status, response body) once the server answers."""
        if self._streams is None:
            raise RuntimeError("not begun")
        reader, writer = self._streams
        try:
            writer.write(self.body[len(self.body) // 2 :])
            await writer.drain()
            async with asyncio.timeout(timeout):
                status_line = await reader.readline()
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
        finally:
            await self.close()
        return int(status_line.split()[1]), body

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # the server may have closed it first
