"""Running ASGI apps under uvicorn inside our own event loop, stopped by our own signal handling."""

import asyncio
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server minus its signal capture: the entry point owns SIGINT/SIGTERM."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def make_server(
    app: FastAPI, host: str, port: int, *, graceful_seconds: int | None = 10
) -> uvicorn.Server:
    """A uvicorn server for `app`; in-flight requests get `graceful_seconds` to finish on
    shutdown (None: as long as they take, for a process bounded by `serve_until`).

    HTTP is parsed by httptools (C) rather than h11 (pure Python): on the plain-ASGI webhook
    route it takes 0.55x h11's server CPU per request, 0.8x under FastAPI (bench/RESULTS.md,
    2026-12-02). The event loop is the caller's: `serve()` runs inside whatever loop the entry
    point started (uvloop measured no better there).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=graceful_seconds,
    )
    return _Server(config)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT, for `serve_until(listen_on=...)`.

    Several processes may bind the same port this way; the kernel spreads new connections over
    those listening. It is bound but not listening: uvicorn listens only once the app's
    lifespan has started, so no connection is queued on a process that is not ready.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def port_in_use(host: str, port: int) -> bool:
    """Whether some socket is bound to host:port already (one bound with SO_REUSEPORT too).

    Checked before processes share a port: the kernel would otherwise let them share it with
    a stale process of another run, which then gets a part of the connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: connections of an earlier run in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def stop_event_on_signals() -> asyncio.Event:
    """An event set by the first SIGINT or SIGTERM (call from inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def exit_after(seconds: float, still_running: Callable[[], list[str]]) -> threading.Timer:
    """Log what is `still_running` and end the process with status 1 if it is still alive in
    `seconds`: a thread, so the bound holds whatever the event loop is stuck on."""

    def expire() -> None:
        # Logging can block (a full stderr pipe nobody reads): the exit must not wait on it.
        last_resort = threading.Timer(1.0, os._exit, (1,))
        last_resort.daemon = True
        last_resort.start()
        logger.error(
            "shutdown took longer than its bound; exiting now, abandoning the work in hand",
            extra={"shutdown_timeout_seconds": seconds, "still_running": still_running()},
        )
        logging.shutdown()  # flush the line above: os._exit skips every handler
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True  # a process that stopped in time exits without waiting for it
    timer.start()
    return timer


def _still_running(
    servers: Sequence[uvicorn.Server], working: Sequence[asyncio.Task[None]]
) -> list[str]:
    """What a stop is waiting for, for the log line of a hard exit (read from another thread:
    counts and flags only)."""
    waiting = [
        f"{len(server.server_state.tasks)} HTTP request(s)"
        for server in servers
        if server.server_state.tasks
    ]
    return waiting + [task.get_name() for task in working if not task.done()]


async def serve_until(
    servers: list[uvicorn.Server],
    stop: asyncio.Event,
    workers: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = (),
    *,
    listen_on: Mapping[uvicorn.Server, list[socket.socket]] | None = None,
    shutdown_timeout: float | None = None,
) -> bool:
    """Run servers and workers until `stop` is set or one of them ends; then stop them all.

    Workers are coroutines that return once `stop` is set. A server in `listen_on` serves on
    those sockets instead of binding its own. With `shutdown_timeout`, a stop that takes
    longer ends the process (`exit_after`). True when everything started and was stopped by
    `stop`, False when something ended or failed by itself.
    """
    sockets = listen_on or {}
    serving = [asyncio.create_task(server.serve(sockets.get(server))) for server in servers]
    working = [
        asyncio.create_task(worker(stop), name=getattr(worker, "__name__", "worker"))
        for worker in workers
    ]
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([*serving, *working, stopper], return_when=asyncio.FIRST_COMPLETED)
    clean = stop.is_set()
    stop.set()
    if shutdown_timeout is not None:
        # Armed for the rest of the process's life: closing the loop can hang too.
        exit_after(shutdown_timeout, lambda: _still_running(servers, working))
        logger.info(
            "stopping: no new connections, finishing the work in hand",
            extra={"shutdown_timeout_seconds": shutdown_timeout},
        )
    for server in servers:
        server.should_exit = True
    results = await asyncio.gather(*serving, *working, return_exceptions=True)
    stopper.cancel()
    for result in results:
        if isinstance(result, BaseException):
            logger.error("a service failed", exc_info=result)
            clean = False
    for bound in sockets.values():
        for sock in bound:
            sock.close()
    return clean and all(server.started for server in servers)
