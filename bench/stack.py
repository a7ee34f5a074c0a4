"""`segflow dev` as a child process on its own ports and data dir, and its processes' memory.

Driven only through the CLI, SEGFLOW_* variables and the banner, so it measures whatever
process layout `segflow dev` has (one process, or a supervisor of one process per role).
"""

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

SEGFLOW = str(Path(sys.executable).with_name("segflow"))
WEBHOOK_SECRET = "bench-webhook-secret"
API_TOKEN = "sfapi_bench-api-token"
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Ports:
    ingest: int
    api: int
    broker: int
    segmenter_health: int
    tagger: int
    standin: int
    smtp: int


@dataclass
class Stack:
    """A running `segflow dev`: where to reach it, and its process tree."""

    process: "subprocess.Popen[bytes]"
    banner: dict[str, str]
    ports: Ports
    workdir: Path
    # Where an external PostgreSQL the stack uses keeps its data (its processes are found there).
    other_dirs: tuple[Path, ...] = ()

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ingest}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def database_url(self) -> str:
        return self.banner["database"]

    @property
    def bootstrap_servers(self) -> str:
        return self.banner["kafka"]

    @property
    def shop_domain(self) -> str:
        return self.banner["demo shop"]

    @property
    def webhook_secret(self) -> str:
        return self.banner["webhook secret"]

    @property
    def api_token(self) -> str:
        return self.banner["API token"]

    def processes(self) -> list[psutil.Process]:
        """`segflow dev` and every process under it (children, grandchildren)."""
        root = psutil.Process(self.process.pid)
        found = {p.pid: p for p in [root, *root.children(recursive=True)]}
        # pg_ctl daemonises PostgreSQL, so its processes are found by their data directory.
        for directory in (self.workdir, *self.other_dirs):
            for proc in processes_under(directory):
                found.setdefault(proc.pid, proc)
        return list(found.values())

    def memory_mb(self) -> dict[str, float]:
        """Memory per process, labelled by command line; PostgreSQL's processes as one sum."""
        return memory_by_label(self.processes())


def processes_under(directory: Path) -> list[psutil.Process]:
    """Processes whose command line names a path inside `directory`, and their children."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if str(directory) in " ".join(proc.info["cmdline"] or []):
            found[proc.pid] = proc
            try:
                found.update((c.pid, c) for c in proc.children(recursive=True))
            except psutil.Error:
                pass
    return list(found.values())


def label_of(proc: psutil.Process) -> str:
    """A short name for a process: `postgres`, `broker`, or `segflow <role>`."""
    try:
        name = proc.name()
        cmdline = proc.cmdline()
    except psutil.Error:
        return "gone"
    text = " ".join(cmdline)
    if name.startswith("postgres") or "postgres:" in text or "bin/postgres" in text:
        return "postgres"
    if "tansu" in text:
        return "broker"
    for i, arg in enumerate(cmdline):
        if arg.endswith("segflow") and i + 1 < len(cmdline):
            return f"segflow {cmdline[i + 1]}"
    if "multiprocessing" in text:
        # A server's worker (spawned, so its command line names no role): its parent's.
        try:
            parent = proc.parent()
        except psutil.Error:
            parent = None
        return f"{label_of(parent)} worker" if parent is not None else "worker"
    if "-m" in cmdline:
        return " ".join(cmdline[cmdline.index("-m") + 1 : cmdline.index("-m") + 3])
    return str(name)


def memory_by_label(procs: list[psutil.Process]) -> dict[str, float]:
    """RSS in MB per labelled process (a second one of a label gets `#2`). PostgreSQL is the
    sum of its processes' PSS, since their RSS each count the shared buffers again."""
    out: dict[str, float] = {}
    seen: Counter[str] = Counter()
    postgres = 0.0
    postgres_count = 0
    for proc in procs:
        label = label_of(proc)
        try:
            if label == "postgres":
                postgres += proc.memory_full_info().pss / 1e6
                postgres_count += 1
                continue
            rss = proc.memory_info().rss / 1e6
        except psutil.Error:
            continue
        seen[label] += 1
        key = label if seen[label] == 1 else f"{label} #{seen[label]}"
        out[key] = round(rss, 1)
    if postgres_count:
        out["postgres"] = round(postgres, 1)
    return out


def stack_env(ports: Ports, data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    """The environment for a `segflow dev` of its own: ports, data dir, fixed demo secrets;
    an external PostgreSQL where `database_url` is given, else the embedded one."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS") and not key.startswith("SEGFLOW_")
    }
    env.update(
        SEGFLOW_INGEST_PORT=str(ports.ingest),
        SEGFLOW_API_PORT=str(ports.api),
        SEGFLOW_BROKER_PORT=str(ports.broker),
        SEGFLOW_SEGMENTER_HEALTH_PORT=str(ports.segmenter_health),
        SEGFLOW_TAGGER_PORT=str(ports.tagger),
        SEGFLOW_SHOPIFY_STANDIN_PORT=str(ports.standin),
        SEGFLOW_SMTP_PORT=str(ports.smtp),
        SEGFLOW_DATA_DIR=str(data_dir),
        SEGFLOW_DEMO_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SEGFLOW_DEMO_API_TOKEN=API_TOKEN,
        SEGFLOW_LOG_LEVEL="WARNING",
        # The benchmark measures capacity: one shop's per-shop rate limits would be the figure.
        SEGFLOW_RATE_LIMIT_READ_PER_SECOND="0",
        SEGFLOW_RATE_LIMIT_WRITE_PER_SECOND="0",
        SEGFLOW_RATE_LIMIT_EVENTS_PER_SECOND="0",
    )
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    # Explicit SEGFLOW_* overrides of the caller (worker counts, batch sizes) still apply.
    for key, value in os.environ.items():
        if key.startswith("SEGFLOW_") and key not in env:
            env[key] = value
    return env


def parse_banner(text: str) -> dict[str, str]:
    """The banner's `  name   value` lines as a dict."""
    return {
        m.group(1): m.group(2)
        for m in (re.match(r"\s+(\w[\w ]*?)\s{2,}(\S+)", line) for line in text.splitlines())
        if m
    }


@asynccontextmanager
async def running_stack(
    workdir: Path,
    ports: Ports,
    database_url: str | None = None,
    postgres_dirs: tuple[Path, ...] = (),
) -> AsyncIterator[Stack]:
    """Start `segflow dev` in workdir (on `database_url` if given, its PostgreSQL's data in
    `postgres_dirs`), yield once its banner is out; SIGTERM and wait after."""
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = workdir / "stdout.log", workdir / "stderr.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [SEGFLOW, "dev"],
            cwd=workdir,
            env=stack_env(ports, workdir / "data", database_url),
            stdout=stdout,
            stderr=stderr,
        )
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                while "demo shop" not in stdout_path.read_text(errors="replace"):
                    if process.poll() is not None:
                        raise RuntimeError(
                            "segflow dev exited before it was ready:\n"
                            + stderr_path.read_text(errors="replace")[-3000:]
                        )
                    await asyncio.sleep(0.1)
            banner = parse_banner(stdout_path.read_text(errors="replace"))
            yield Stack(process, banner, ports, workdir, postgres_dirs)
        finally:
            await stop_process(process)


async def stop_process(process: "subprocess.Popen[bytes]") -> None:
    """SIGTERM, wait for an orderly stop, SIGKILL the tree if it hangs."""
    if process.poll() is None:
        try:
            tree = psutil.Process(process.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            for proc in [psutil.Process(process.pid), *tree]:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            await asyncio.to_thread(process.wait, 10)
