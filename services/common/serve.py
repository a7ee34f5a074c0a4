"""Running ASGI apps under uvicorn inside our own event loop, stopped by our own signal handling."""

import asyncio
import signal
from collections.abc import Generator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


class _Server(uvicorn.Server):
    """uvicorn's server minus its signal capture: the entry point owns SIGINT/SIGTERM."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def make_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for `app`; in-flight requests get 10 s to finish on shutdown."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return _Server(config)


def stop_event_on_signals() -> asyncio.Event:
    """An event set by the first SIGINT or SIGTERM (call from inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_until(servers: list[uvicorn.Server], stop: asyncio.Event) -> bool:
    """Run servers until `stop` is set or one ends; True if all started and were stopped."""
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    clean = stop.is_set()
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    return clean and all(server.started for server in servers)
