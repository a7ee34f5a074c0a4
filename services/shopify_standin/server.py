"""Running the stand-in inside the caller's event loop: `async with running_standin() as url`
serves it on a free loopback port for tests and benchmarks and stops it on the way out."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from services.common.serve import make_server
from services.shopify_standin.app import create_app
from services.shopify_standin.context import Runtime
from services.shopify_standin.webhooks import DeliveryPolicy


@dataclass(frozen=True)
class RunningStandin:
    """A served stand-in: its base URL (no trailing slash) and, for white-box checks, its app."""

    url: str
    app: FastAPI

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def graphql_url(self, api_version: str) -> str:
        """The Admin GraphQL endpoint for `api_version`."""
        return f"{self.url}/admin/api/{api_version}/graphql.json"


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def running_standin(
    host: str = "127.0.0.1", port: int | None = None, policy: DeliveryPolicy | None = None
) -> AsyncIterator[RunningStandin]:
    """Serve a fresh stand-in on host:port (a free port by default) until the block ends."""
    app = create_app(policy)
    chosen = port or _free_port(host)
    server = make_server(app, host, chosen)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the stand-in stopped during start-up")
                await asyncio.sleep(0.01)
        yield RunningStandin(f"http://{host}:{chosen}", app)
    finally:
        server.should_exit = True
        await task
