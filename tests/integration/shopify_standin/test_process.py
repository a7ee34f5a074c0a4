"""`segflow shopify-standin` as its own process: it serves on the configured port and exits 0
after SIGTERM."""

import asyncio
import os
import signal
import subprocess
import sys

import httpx

from tests.helpers import free_port


async def test_the_command_serves_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "SEGFLOW_SHOPIFY_STANDIN_PORT": str(port), "SEGFLOW_LOG_LEVEL": "WARNING"}
    child = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "shopify-standin"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(30):
            while True:
                try:
                    answer = await http.get(f"http://127.0.0.1:{port}/_standin/healthz")
                    break
                except httpx.TransportError:
                    assert child.poll() is None, child.stderr.read() if child.stderr else ""
                    await asyncio.sleep(0.05)
        assert answer.json() == {"status": "ok"}
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=20) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stderr:
            child.stderr.close()
