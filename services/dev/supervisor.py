"""Running roles as child processes: started, their output prefixed, awaited ready, watched,
and stopped in order (SIGTERM, then SIGKILL after a bound).

A role is one `segflow <role>` command run by one or more processes. The supervisor does not
restart anything: a child that dies is reported and the caller stops the whole set (in
production the orchestrator restarts processes, and a half-running dev stack misleads).
"""

import asyncio
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx
import psutil

from services.dev.embedded import die_with_parent

logger = logging.getLogger(__name__)

# Lines of each child's output kept to show when it dies.
_TAIL_LINES = 20
# A child's output line longer than this is passed on in pieces.
_LINE_LIMIT = 1 << 20


def _no_environment(index: int) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class Role:
    """`segflow <name>` run by `processes` processes, each ready once `ready_url(i)` answers 200.

    `env(i)` is what member i (0-based) adds to the common environment. Members that share
    `shared_port` must each also listen on it before they count as ready (a request to the
    port reaches any one of them). `command`, when given, is run instead of `segflow <name>`
    (a helper beside the roles, such as the local Prometheus).
    """

    name: str
    ready_url: Callable[[int], str]
    processes: int = 1
    env: Callable[[int], Mapping[str, str]] = _no_environment
    shared_port: int | None = None
    command: tuple[str, ...] | None = None


def segflow_command() -> list[str]:
    """The `segflow` command of this installation (the script beside this Python)."""
    script = Path(sys.executable).with_name("segflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]


@dataclass
class Child:
    """One running member of a role."""

    role: Role
    index: int
    process: asyncio.subprocess.Process
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    pump: asyncio.Task[None] | None = None
    waiter: asyncio.Task[int] | None = None

    @property
    def name(self) -> str:
        return f"{self.role.name}.{self.index + 1}"

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def last_output(self) -> str:
        return "\n".join(self.tail)


class ChildExitedError(RuntimeError):
    """A child ended while it should have been running."""

    def __init__(self, child: Child) -> None:
        super().__init__(f"{child.name} exited with {child.returncode}")
        self.child = child


class Supervisor:
    """Starts every member of `roles`, and stops them in the order of `roles`."""

    def __init__(
        self,
        roles: Sequence[Role],
        *,
        environment: Mapping[str, str],
        ready_timeout: float,
        stop_timeout: float,
        output: TextIO | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.roles = list(roles)
        self.environment = dict(environment)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.output = output or sys.stderr
        self.command = list(command or segflow_command())
        self.children: list[Child] = []
        self._stopped = False

    async def start(self, stop: asyncio.Event) -> bool:
        """Start every member and wait until each is ready. False if `stop` was set first.

        Raises ChildExitedError when a child ends meanwhile, TimeoutError when one is not
        ready within `ready_timeout`.
        """
        for role in self.roles:
            for index in range(role.processes):
                self.children.append(await self._spawn(role, index))
        deadline = time.monotonic() + self.ready_timeout
        waiting = list(self.children)
        async with httpx.AsyncClient(timeout=2) as client:
            while waiting:
                for child in waiting:
                    if child.returncode is not None:
                        raise ChildExitedError(child)
                if stop.is_set():
                    return False
                answers = await asyncio.gather(*(self._ready(client, c) for c in waiting))
                waiting = [c for c, ready in zip(waiting, answers, strict=True) if not ready]
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(child.name for child in waiting)
                    raise TimeoutError(f"not ready after {self.ready_timeout:.0f} s: {names}")
                if waiting:
                    await asyncio.sleep(0.1)
        return True

    async def watch(self, stop: asyncio.Event) -> Child | None:
        """Wait until `stop` is set (None) or a child ends (that child, already reported)."""
        stopping = asyncio.create_task(stop.wait())
        waiters = [child.waiter for child in self.children if child.waiter is not None]
        try:
            await asyncio.wait([stopping, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        for child in self.children:
            if child.returncode is not None:
                await self.report_death(child)
                return child
        return None

    async def report_death(self, child: Child) -> None:
        """Log a child that ended by itself: its name, exit status and last output."""
        if child.pump is not None:
            # Its last words may still be in the pipe.
            await asyncio.wait([child.pump], timeout=2)
        logger.error(
            "%s exited with %s; its last output:\n%s",
            child.name,
            child.returncode,
            child.last_output(),
            extra={"child": child.name, "exit_code": child.returncode},
        )

    async def stop(self) -> None:
        """Stop the roles in order: SIGTERM each one's members, SIGKILL after `stop_timeout`."""
        if self._stopped:
            return
        self._stopped = True
        for role in self.roles:
            members = [child for child in self.children if child.role is role]
            for child in members:
                if child.returncode is None:
                    child.process.send_signal(signal.SIGTERM)
            waiting = [child.waiter for child in members if child.waiter is not None]
            if waiting:
                _, late = await asyncio.wait(waiting, timeout=self.stop_timeout)
                for child in members:
                    if child.returncode is None:
                        logger.warning(
                            "%s did not stop within %.0f s; killing it",
                            child.name,
                            self.stop_timeout,
                            extra={"child": child.name},
                        )
                        child.process.kill()
                if late:
                    await asyncio.wait(late)
            for child in members:
                if child.pump is not None:
                    await child.pump
                logger.info(
                    "%s stopped with exit status %s",
                    child.name,
                    child.returncode,
                    extra={"child": child.name, "exit_code": child.returncode},
                )

    async def _spawn(self, role: Role, index: int) -> Child:
        env = {**self.environment, **role.env(index)}
        argv = role.command or (*self.command, role.name)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            limit=_LINE_LIMIT,
            # Its own process group: Ctrl-C in the terminal reaches the supervisor only, which
            # then stops the roles in order. And it gets SIGTERM if the supervisor is killed.
            process_group=0,
            preexec_fn=die_with_parent,
        )
        child = Child(role, index, process)
        child.pump = asyncio.create_task(self._pump(child), name=f"output of {child.name}")
        child.waiter = asyncio.create_task(process.wait(), name=f"exit of {child.name}")
        logger.info("started %s", child.name, extra={"child": child.name, "pid": process.pid})
        return child

    async def _pump(self, child: Child) -> None:
        """Copy the child's output line by line, each line prefixed with its name."""
        stream = child.process.stdout
        if stream is None:
            return
        prefix = f"{child.name} | "
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over the limit: pass on what was read
                raw = await stream.read(_LINE_LIMIT)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\n")
            child.tail.append(line)
            self.output.write(prefix + line + "\n")
            self.output.flush()

    async def _ready(self, client: httpx.AsyncClient, child: Child) -> bool:
        port = child.role.shared_port
        if port is not None and not _listens_on(child.process.pid, port):
            return False
        try:
            response = await client.get(child.role.ready_url(child.index))
        except httpx.TransportError:
            return False
        return response.status_code == 200


def _listens_on(pid: int, port: int) -> bool:
    """True when process `pid` has a listening TCP socket on `port`."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return any(
        conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
        for conn in connections
    )


def child_environment(base: Mapping[str, str], **settings: str) -> dict[str, str]:
    """`base` (the supervisor's environment) with `settings` on top, minus what must be per role."""
    env = {key: value for key, value in base.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(settings)
    return env
