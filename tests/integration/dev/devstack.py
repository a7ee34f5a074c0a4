"""A real `segflow dev` for the tests: started in a directory of its own, its banner read,
its role processes found with psutil, stopped (and checked to leave nothing behind)."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psutil

from tests.helpers import free_port

SEGFLOW = str(Path(sys.executable).with_name("segflow"))
ROLES = ("ingest", "segmenter", "api", "tagger")


def free_port_pair() -> int:
    """A port p such that p and p + 1 are both free (two segmenter members' health ports)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


def dev_env(**overrides: str) -> dict[str, str]:
    """An environment for `segflow dev` on free ports, starting its own embedded pair."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "PROMETHEUS_MULTIPROC_DIR")
        and not key.startswith("SEGFLOW_")
    }
    env.update(
        SEGFLOW_INGEST_PORT=str(free_port()),
        SEGFLOW_API_PORT=str(free_port()),
        SEGFLOW_SEGMENTER_HEALTH_PORT=str(free_port_pair()),
        SEGFLOW_BROKER_PORT=str(free_port()),
        SEGFLOW_TAGGER_PORT=str(free_port()),
        SEGFLOW_SHOPIFY_STANDIN_PORT=str(free_port()),
        SEGFLOW_SMTP_PORT=str(free_port()),
        SEGFLOW_DEMO_WEBHOOK_SECRET="dev-test-secret",
        SEGFLOW_LOG_LEVEL="INFO",
    )
    env.update(overrides)
    return env


class DevStack:
    """One `segflow dev [args]` process run in `workdir`; output in stdout.log and stderr.log
    there."""

    def __init__(self, workdir: Path, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.env = env
        self.args = args
        self.data_dir = workdir / ".segflow"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def process(self) -> "subprocess.Popen[bytes]":
        if self._process is None:
            raise RuntimeError("not started")
        return self._process

    def port(self, name: str) -> int:
        return int(self.env[f"SEGFLOW_{name.upper()}_PORT"])

    def url(self, name: str, offset: int = 0) -> str:
        return f"http://127.0.0.1:{self.port(name) + offset}"

    def stdout(self) -> str:
        return (self.workdir / "stdout.log").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.workdir / "stderr.log").read_text(errors="replace")

    def start(self) -> "DevStack":
        with (
            (self.workdir / "stdout.log").open("wb") as out,
            (self.workdir / "stderr.log").open("wb") as err,
        ):
            self._process = subprocess.Popen(
                [SEGFLOW, "dev", *self.args], cwd=self.workdir, env=self.env, stdout=out, stderr=err
            )
        return self

    async def wait_for_banner(self, timeout: float = 120) -> dict[str, str]:
        """The banner's lines as {label: first word}, once it is printed."""
        async with asyncio.timeout(timeout):
            while "demo shop" not in self.stdout():
                assert self.process.poll() is None, self.stderr()[-3000:]
                await asyncio.sleep(0.1)
        lines = self.stdout().splitlines()
        return {
            m.group(1): m.group(2)
            for m in (re.match(r"\s+(\w[\w ]*?)\s{2,}(\S+)", line) for line in lines)
            if m
        }

    def roles(self) -> dict[str, list[psutil.Process]]:
        """The child processes running `segflow <role>`, by role."""
        found: dict[str, list[psutil.Process]] = {role: [] for role in ROLES}
        for child in psutil.Process(self.process.pid).children():
            try:
                cmdline = child.cmdline()
            except psutil.NoSuchProcess:
                continue
            if len(cmdline) >= 2 and cmdline[-2].endswith("segflow") and cmdline[-1] in ROLES:
                found[cmdline[-1]].append(child)
        return found

    def descendants(self) -> list[psutil.Process]:
        """Every process it started, the embedded PostgreSQL's included."""
        children: list[psutil.Process] = psutil.Process(self.process.pid).children(recursive=True)
        return children + processes_using(self.data_dir)

    async def wait_exit(self, timeout: float = 90) -> int:
        return await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout)

    async def stop(self, timeout: float = 90) -> int:
        """SIGTERM and wait for its exit status; SIGKILL if it outlives `timeout`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(timeout)
        except TimeoutError:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)
            raise

    def log_entries(self) -> list[dict[str, Any]]:
        """The supervisor's own JSON log lines (children's lines are prefixed, so skipped)."""
        entries = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except ValueError:
                    continue
        return entries


def processes_using(data_dir: Path) -> list[psutil.Process]:
    """Processes whose command line names `data_dir` (the embedded PostgreSQL)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(data_dir) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` still running (zombies count as gone)."""
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


@asynccontextmanager
async def running_dev(
    workdir: Path, env: dict[str, str], args: tuple[str, ...] = ()
) -> AsyncIterator[DevStack]:
    """`segflow dev [args]` up until its banner; on the way out SIGTERM, exit 0 and nothing
    left."""
    stack = DevStack(workdir, env, args).start()
    try:
        await stack.wait_for_banner()
        yield stack
    finally:
        left = stack.descendants() if stack.process.poll() is None else []
        code = await stack.stop()
    assert code == 0, stack.stderr()[-3000:]
    assert still_running(left) == [], left
