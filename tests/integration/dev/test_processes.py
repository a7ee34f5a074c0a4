"""`segflow dev` as a supervisor: one OS process per role member, ingest processes sharing
one port, segmenter members sharing the partitions, a dead child stopping everything with
exit 1, and SIGTERM stopping the roles in order without losing an accepted webhook."""

import base64
import hashlib
import hmac
import json
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import drain_topic
from tests.integration.dev.devstack import (
    DevStack,
    dev_env,
    processes_using,
    running_dev,
    still_running,
)
from tests.integration.segmenter.processes import poll

SECRET = "dev-test-secret"
PARTITIONS = 6
REQUESTS = 40


def _listens_on(proc: psutil.Process, port: int) -> bool:
    return any(
        conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
        for conn in proc.net_connections(kind="tcp")
    )


def _unknown_shop_count(samples: list[Any]) -> float:
    return float(
        sum(
            sample.value
            for sample in samples
            if sample.name == "segflow_ingest_requests_total"
            and sample.labels.get("outcome") == "unknown_shop"
        )
    )


def _counted_by(metrics_dir: Path, pid: int) -> float:
    """What one ingest process counted, read from its own multiprocess files."""
    files = [str(path) for path in metrics_dir.glob(f"*_{pid}.db")]
    families = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
    return _unknown_shop_count([s for family in families for s in family.samples])


async def _partitions(client: httpx.AsyncClient, url: str) -> list[int]:
    answer = await client.get(f"{url}/readyz")
    found = answer.json().get("consumer", {}).get("partitions")
    return list(found) if isinstance(found, list) else []


async def test_each_role_runs_as_its_own_processes_and_members_share_the_work(
    server_tmp_path: Path,
) -> None:
    env = dev_env(
        SEGFLOW_INGEST_PROCESSES="2",
        SEGFLOW_SEGMENTER_PROCESSES="2",
        SEGFLOW_TOPIC_PARTITIONS=str(PARTITIONS),
        SEGFLOW_CONSUMER_SESSION_TIMEOUT_MS="3000",
    )
    async with running_dev(server_tmp_path, env) as stack:
        roles = stack.roles()
        assert {role: len(found) for role, found in roles.items()} == {
            "ingest": 2,
            "segmenter": 2,
            "api": 1,
            "tagger": 1,
        }
        pids = {proc.pid for found in roles.values() for proc in found}
        assert len(pids) == 6 and stack.process.pid not in pids
        # Each child's output is passed on, each line prefixed with the child's name.
        prefixes = {line.split(" | ")[0] for line in stack.stderr().splitlines() if " | " in line}
        assert {
            "ingest.1",
            "ingest.2",
            "segmenter.1",
            "segmenter.2",
            "api.1",
            "tagger.1",
        } <= prefixes
        for proc in roles["ingest"]:
            assert _listens_on(proc, stack.port("ingest")), proc.cmdline()

        # A new connection per request: the kernel spreads them over both ingest processes.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=stack.url("ingest"), limits=no_reuse) as client:
            for n in range(REQUESTS):
                answer = await client.post(
                    "/webhooks/shopify",
                    headers={"X-Shopify-Shop-Domain": "nobody.myshopify.com"},
                    content=json.dumps({"n": n}),
                )
                assert answer.status_code == 401, answer.text
            # Whichever process answers the scrape, it counts every process's requests.
            for _ in range(6):
                text = (await client.get("/metrics")).text
                samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
                assert _unknown_shop_count(samples) == REQUESTS
        metrics_dir = stack.data_dir / "metrics" / "ingest"
        counted = [_counted_by(metrics_dir, proc.pid) for proc in roles["ingest"]]
        assert sum(counted) == REQUESTS
        assert all(count > 0 for count in counted), counted

        members = [stack.url("segmenter_health", offset) for offset in (0, 1)]
        async with httpx.AsyncClient(timeout=5) as client:

            async def shared() -> list[list[int]] | None:
                found = [await _partitions(client, url) for url in members]
                together = sorted(found[0] + found[1])
                return found if all(found) and together == list(range(PARTITIONS)) else None

            await poll(shared, 60, "both segmenter members to hold partitions")


async def test_a_child_killed_with_sigkill_stops_the_stack_with_exit_1_and_leaves_nothing(
    server_tmp_path: Path,
) -> None:
    env = dev_env(SEGFLOW_INGEST_PROCESSES="1", SEGFLOW_SEGMENTER_PROCESSES="1")
    stack = DevStack(server_tmp_path, env).start()
    try:
        await stack.wait_for_banner()
        everything = stack.descendants()
        [victim] = stack.roles()["segmenter"]
        victim.send_signal(signal.SIGKILL)
        code = await stack.wait_exit()
    finally:
        if stack.process.poll() is None:
            await stack.stop()
    assert code == 1, stack.stderr()[-3000:]
    [death] = [e for e in stack.log_entries() if e["level"] == "ERROR" and "child" in e]
    assert (death["child"], death["exit_code"]) == ("segmenter.1", -signal.SIGKILL)
    # The report carries the child's last lines of output (its own JSON log lines).
    assert '"logger"' in death["message"].partition("its last output:")[2]
    assert still_running(everything) == []
    assert processes_using(stack.data_dir) == []


def _signed_order(customer: int) -> tuple[bytes, dict[str, str]]:
    now = datetime.now(UTC).isoformat()
    body = json.dumps(
        {
            "id": 450789469,
            "created_at": now,
            "updated_at": now,
            "total_price": "1500.00",
            "customer": {"id": customer, "created_at": now, "updated_at": now},
            "line_items": [],
        }
    ).encode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest())
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": "demo.myshopify.com",
        "X-Shopify-Hmac-Sha256": signature.decode(),
        "X-Shopify-Event-Id": f"order-{uuid.uuid4()}",
        "X-Shopify-Triggered-At": now,
    }
    return body, headers


async def test_sigterm_stops_the_roles_in_order_and_loses_no_accepted_webhook(
    server_tmp_path: Path, kafka_bootstrap: str
) -> None:
    # The suite's broker outlives `segflow dev`, so a restart finds what was not processed.
    suffix = uuid.uuid4().hex[:8]
    changes_topic = f"segflow.segment-changes.{suffix}"
    env = dev_env(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        SEGFLOW_TOPIC_EVENTS=f"segflow.events.{suffix}",
        SEGFLOW_TOPIC_SEGMENT_CHANGES=changes_topic,
        SEGFLOW_TOPIC_DEAD_LETTER=f"segflow.dead-letter.{suffix}",
        SEGFLOW_TOPIC_PARTITIONS="3",
        SEGFLOW_SEGMENTER_GROUP=f"segflow-segmenter.{suffix}",
        SEGFLOW_CONSUMER_SESSION_TIMEOUT_MS="3000",
        SEGFLOW_INGEST_PROCESSES="2",
        SEGFLOW_SEGMENTER_PROCESSES="2",
    )
    customer = 207119551
    stack = DevStack(server_tmp_path, env).start()
    try:
        await stack.wait_for_banner()
        body, headers = _signed_order(customer)
        async with httpx.AsyncClient(base_url=stack.url("ingest")) as client:
            answer = await client.post("/webhooks/shopify", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        stack.process.send_signal(signal.SIGTERM)
        code = await stack.wait_exit()
    finally:
        if stack.process.poll() is None:
            await stack.stop()
    assert code == 0, stack.stderr()[-3000:]
    stopped = [
        e["child"].split(".")[0]
        for e in stack.log_entries()
        if "child" in e and "stopped with exit status" in e["message"]
    ]
    assert stopped == ["ingest", "ingest", "segmenter", "segmenter", "api", "tagger"], stopped
    assert all(
        e.get("exit_code") == 0 for e in stack.log_entries() if "stopped with exit" in e["message"]
    )

    async def changed() -> bool:
        records = await drain_topic(kafka_bootstrap, changes_topic)
        return any(json.loads(r.value)["customer_id"] == str(customer) for r in records)

    if not await changed():
        # Not processed before the stop: the restarted segmenter must pick it up.
        async with running_dev(server_tmp_path, env):
            await poll(changed, 60, "the order's segment change after the restart", every=0.5)
