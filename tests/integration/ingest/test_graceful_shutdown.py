"""SIGTERM to a real `segflow ingest` under a stream of webhooks: it refuses new connections,
answers the delivery it is still receiving, and every delivery it accepted (200) is on the
events topic exactly once; it exits 0 within SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS."""

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx

from services.common.envelope import decode_envelope
from services.common.settings import Settings
from services.common.shops import ShopCredentials
from tests.helpers import drain_topic
from tests.integration.ingest.test_shopify_webhook import webhook_headers
from tests.integration.roles import BOUND_SECONDS, HeldRequest, RoleProcess, role_env
from tests.integration.segmenter.processes import poll

SENDERS = 4
BEFORE_SIGTERM = 40  # deliveries accepted before the signal


def delivery(shop: ShopCredentials, n: int) -> tuple[bytes, dict[str, str], str]:
    """(body, headers, event id) of the n-th signed orders/create webhook."""
    body = json.dumps(
        {"id": 1000 + n, "total_price": "10.00", "customer": {"id": 1 + n % 7}}
    ).encode()
    event_id = f"shutdown-{n}"
    return body, webhook_headers(shop, body, **{"X-Shopify-Event-Id": event_id}), event_id


async def test_sigterm_mid_stream_loses_and_doubles_no_accepted_webhook(
    settings: Settings, shop: ShopCredentials, tmp_path: Path
) -> None:
    ingest = RoleProcess("ingest", role_env(settings), tmp_path / "ingest.log").start()
    await ingest.wait_ready()
    accepted: list[str] = []
    answered_otherwise: Counter[int] = Counter()
    numbers = iter(range(1_000_000))

    async def sender() -> None:
        # Each sender keeps one connection alive and sends until ingest is gone.
        async with httpx.AsyncClient(base_url=ingest.url, timeout=10) as client:
            while True:
                body, headers, event_id = delivery(shop, next(numbers))
                try:
                    answer = await client.post("/webhooks/shopify", content=body, headers=headers)
                except httpx.ConnectError:
                    return  # the listener is closed: stop taking work
                except httpx.TransportError:
                    continue  # a keep-alive closed under the request: unanswered, not accepted
                if answer.status_code == 200:
                    accepted.append(event_id)
                else:
                    answered_otherwise[answer.status_code] += 1

    body, headers, held_id = delivery(shop, -1)
    held = await HeldRequest(ingest.port, "POST", "/webhooks/shopify", headers, body).begin()
    senders = [asyncio.create_task(sender()) for _ in range(SENDERS)]
    try:
        await poll(lambda: _at_least(accepted, BEFORE_SIGTERM), 15, "a stream of deliveries")
        signalled = ingest.terminate()

        async def refusing() -> bool:
            ingest.assert_alive()  # still draining: the held delivery is not finished
            return await ingest.refuses_connections()

        await poll(refusing, BOUND_SECONDS / 2, "new connections to be refused while draining")
        await asyncio.wait_for(asyncio.gather(*senders), 10)
        status, answer = await held.finish()
        code, took = await ingest.exit_after(signalled, BOUND_SECONDS + 5)
    finally:
        await held.close()
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        await ingest.stop()
    assert status == 200, answer
    assert code == 0, ingest.log_tail()
    assert took < BOUND_SECONDS, f"took {took:.1f} s to exit"
    assert not answered_otherwise, f"answers other than 200 while stopping: {answered_otherwise}"
    on_topic = Counter(
        decode_envelope(record.value).event_id
        for record in await drain_topic(
            settings.kafka_bootstrap_servers or "", settings.topic_events
        )
    )
    wanted = [*accepted, held_id]
    assert {event: on_topic[event] for event in wanted} == dict.fromkeys(wanted, 1)


async def _at_least(items: list[str], count: int) -> bool:
    return len(items) >= count
