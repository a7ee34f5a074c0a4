"""`segflow segmenter` never half-runs: without a running consumer it exits non-zero.
`segflow segmenter` and `segflow api` each run alone, with their own /readyz."""

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from tests.helpers import free_port
from tests.integration.segmenter.processes import (
    SEGFLOW,
    SegmenterProcess,
    order_event,
    poll,
    produce,
    segmenter_env,
)


async def test_a_consumer_that_cannot_start_makes_the_process_exit_non_zero(
    settings: Settings, tmp_path: Path
) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    env = segmenter_env(
        settings, KAFKA_BOOTSTRAP_SERVERS=nobody, SEGFLOW_STARTUP_TIMEOUT_SECONDS="2"
    )
    segmenter = SegmenterProcess(env, tmp_path / "segmenter.log").start()
    try:
        deadline = time.monotonic() + 20
        while segmenter.alive() and time.monotonic() < deadline:
            # While it lives the API may answer, but never "ready": no consumer runs.
            answer = await segmenter.readyz()
            assert answer is None or answer[0] == 503, answer
            await asyncio.sleep(0.1)
        assert not segmenter.alive(), "still running without a consumer"
    finally:
        code = await segmenter.stop()
    assert code == 1, segmenter.log_tail()
    assert "not reachable" in segmenter.log_tail()


async def test_a_consumer_that_dies_takes_the_process_down_with_exit_1(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    # The hook raises an unexpected error in the consumer task, as a bug in it would.
    env = segmenter_env(settings, SEGFLOW_CRASH_AT="after_db_commit:1:raise")
    segmenter = SegmenterProcess(env, tmp_path / "segmenter.log").start()
    try:
        await segmenter.wait_ready()
        await produce(settings, [order_event(shop.domain, 1, 42, "10.00")])
        code = await asyncio.wait_for(asyncio.to_thread(segmenter.process.wait), 30)
    finally:
        await segmenter.stop()
    assert code == 1, segmenter.log_tail()
    # It died after the database commit: the event is applied once, and a restart replays it
    # as a duplicate.
    assert await db.fetchval("SELECT count(*) FROM processed_events") == 1
    again = SegmenterProcess(segmenter_env(settings), tmp_path / "again.log").start()
    try:
        await again.wait_ready()
        await poll(
            lambda: again.metric_at_least("segflow_segmenter_events_total", 1, outcome="duplicate"),
            30,
            "the replayed event to be skipped",
        )
    finally:
        assert await again.stop() == 0, again.log_tail()
    assert await db.fetchval("SELECT orders_count FROM customers WHERE customer_id = 42") == 1


async def test_a_segmenter_alone_serves_health_and_metrics_but_no_rest_api(
    settings: Settings, tmp_path: Path
) -> None:
    segmenter = SegmenterProcess(segmenter_env(settings), tmp_path / "segmenter.log").start()
    try:
        body = await segmenter.wait_ready()
        assert body["checks"] == {"consumer": True, "publisher": True}
        assert body["consumer"]["partitions"] == [0, 1, 2]
        async with httpx.AsyncClient(base_url=segmenter.url) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/v1/segments")).status_code == 404
        assert await segmenter.metric("segflow_segmenter_retries_total") == 0
    finally:
        code = await segmenter.stop()
    assert code == 0, segmenter.log_tail()


def _api_env(database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGFLOW_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the API needs none
    env.update(DATABASE_URL=database_url, SEGFLOW_API_PORT=str(port))
    return env


async def test_the_api_alone_answers_readyz_and_exits_0_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    with (tmp_path / "api.log").open("wb") as log:
        api = subprocess.Popen(
            [SEGFLOW, "api"], env=_api_env(settings.database_url or "", port), stderr=log
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def ready() -> httpx.Response | None:
                assert api.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
                try:
                    answer = await client.get("/readyz")
                except httpx.TransportError:
                    return None
                return answer if answer.status_code == 200 else None

            answer = await poll(ready, 30, "the API to be ready")
            assert answer.json()["checks"] == {"database": True}
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/metrics")).status_code == 200
            assert (await client.get("/v1/segments")).status_code == 401
    finally:
        api.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(api.wait, 30)
    assert code == 0, (tmp_path / "api.log").read_text()[-3000:]


async def test_the_api_without_its_database_exits_non_zero(tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/segflow"
    with (tmp_path / "api.log").open("wb") as log:
        api = subprocess.Popen([SEGFLOW, "api"], env=_api_env(nowhere, free_port()), stderr=log)
    try:
        code = await asyncio.wait_for(asyncio.to_thread(api.wait), 30)
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
    assert code != 0, (tmp_path / "api.log").read_text()[-3000:]
