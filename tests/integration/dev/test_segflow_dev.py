"""`segflow dev` from an empty directory: starts the embedded pair, goes ready, stops, restarts."""

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import psutil

from services.common.db import load_migrations
from tests.helpers import free_port

SEGFLOW = str(Path(sys.executable).with_name("segflow"))


@asynccontextmanager
async def running_dev(workdir: Path, env: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    """Run `segflow dev` in workdir until it prints its banner; SIGTERM it on the way out."""
    stdout = (workdir / "stdout.log").open("wb")
    stderr = (workdir / "stderr.log").open("wb")
    process = subprocess.Popen([SEGFLOW, "dev"], cwd=workdir, env=env, stdout=stdout, stderr=stderr)
    try:
        banner = await wait_for_banner(process, workdir / "stdout.log", workdir / "stderr.log")
        yield banner
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 60)
        stdout.close()
        stderr.close()
        assert code == 0, (workdir / "stderr.log").read_text()[-3000:]


async def wait_for_banner(
    process: "subprocess.Popen[bytes]", stdout: Path, stderr: Path
) -> dict[str, str]:
    async with asyncio.timeout(90):
        while "demo shop" not in stdout.read_text():
            assert process.poll() is None, stderr.read_text()[-3000:]
            await asyncio.sleep(0.1)
    lines = stdout.read_text().splitlines()
    return {
        m.group(1): m.group(2)
        for m in (re.match(r"\s+(\w[\w ]*?)\s{2,}(\S+)", line) for line in lines)
        if m
    }


def children_of_data_dir(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmdline:
            found.append(proc)
    return found


async def test_dev_starts_from_empty_dir_goes_ready_and_reuses_its_data(
    server_tmp_path: Path,
) -> None:
    tmp_path = server_tmp_path  # its embedded PostgreSQL must stay reachable (server_directory)
    ingest_port, api_port, broker_port = free_port(), free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env.update(
        SEGFLOW_INGEST_PORT=str(ingest_port),
        SEGFLOW_API_PORT=str(api_port),
        SEGFLOW_BROKER_PORT=str(broker_port),
        SEGFLOW_DEMO_WEBHOOK_SECRET="dev-test-secret",
    )
    data_dir = tmp_path / ".segflow"
    assert not data_dir.exists()

    async with running_dev(tmp_path, env) as banner:
        assert banner["webhook secret"] == "dev-test-secret"
        assert banner["API token"].startswith("sfapi_")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingest_port}") as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": True, "kafka": True}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as client:
            api_ready = await client.get("/readyz")
            segments = await client.get(
                "/v1/segments", headers={"Authorization": f"Bearer {banner['API token']}"}
            )
        assert api_ready.status_code == 200, api_ready.text
        handles = {segment["handle"] for segment in segments.json()["segments"]}
        assert {"vip", "new-customer", "churn-risk"} <= handles
        conn = await asyncpg.connect(banner["database"])
        try:
            await conn.execute(
                "INSERT INTO shops (domain, webhook_secret, api_token_hash, flow_secret_hash)"
                " VALUES ('kept.myshopify.com', 's', 'a', 'f')"
            )
        finally:
            await conn.close()
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert children_of_data_dir(data_dir) == []

    async with running_dev(tmp_path, env) as banner:
        conn = await asyncpg.connect(banner["database"])
        try:
            domains = {r["domain"] for r in await conn.fetch("SELECT domain FROM shops")}
            migrations = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        finally:
            await conn.close()
        assert domains == {"demo.myshopify.com", "kept.myshopify.com"}
        assert migrations == len(load_migrations())
    assert children_of_data_dir(data_dir) == []
