"""Review finding: with SEGFLOW_INGEST_PROCESSES > 1, `segflow dev` shares its ingest port with
whatever else listens there with SO_REUSEPORT (a stale `segflow ingest` of an earlier or a
parallel run, same user), instead of refusing the port as it does with one process.

The kernel then spreads new webhook connections over the new stack's ingest processes and the
stale listener: a share of Shopify's deliveries reaches another run (its shops, its broker) or a
process that never answers, and `segflow dev` prints its banner as if the port were its own.
The stale run's ingest is stood in for by a socket bound and listening exactly as
`reuse_port_socket` binds it (SO_REUSEADDR + SO_REUSEPORT).
"""

import asyncio
import socket
from pathlib import Path

from tests.integration.dev.devstack import DevStack, dev_env, still_running


async def test_segflow_dev_refuses_an_ingest_port_another_run_already_listens_on(
    server_tmp_path: Path,
) -> None:
    env = dev_env(SEGFLOW_INGEST_PROCESSES="2", SEGFLOW_SEGMENTER_PROCESSES="1")
    port = int(env["SEGFLOW_INGEST_PORT"])
    stale = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stale.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    stale.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    stale.bind(("127.0.0.1", port))
    stale.listen(64)
    stack = DevStack(server_tmp_path, env).start()
    left = []
    try:
        async with asyncio.timeout(120):
            while stack.process.poll() is None and "demo shop" not in stack.stdout():
                await asyncio.sleep(0.1)
        if stack.process.poll() is None:
            left = stack.descendants()
        running = "demo shop" in stack.stdout()
        assert not running, (
            f"segflow dev is running with its ingest on 127.0.0.1:{port}, a port another "
            "listener already serves: connections are shared with it"
        )
        assert stack.process.returncode == 1, stack.stderr()[-3000:]
    finally:
        stale.close()
        if stack.process.poll() is None:
            await stack.stop()
        assert still_running(left) == [], left
