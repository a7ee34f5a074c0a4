"""SIGTERM to a real `segflow api` with lookups in flight: it refuses new connections, answers
every lookup it had taken, and exits 0 within SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS; one stuck past
that bound is abandoned with exit 1 and a log line saying so."""

import asyncio
import json
from pathlib import Path

import asyncpg
import httpx

from services.common.settings import Settings
from services.common.shops import ShopCredentials
from tests.integration.roles import BOUND_SECONDS, RoleProcess, role_env
from tests.integration.segmenter.processes import poll

IN_FLIGHT = 8  # below the API's pool (10): each request holds a connection, waiting on the lock
WAITING_ON_CUSTOMERS = """
SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE c.relname = 'customers' AND NOT l.granted
"""


async def _lookups_blocked_on_a_lock(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path, **env: str
) -> tuple[RoleProcess, asyncpg.Connection, list[asyncio.Task[httpx.Response]]]:
    """A ready `segflow api`, IN_FLIGHT lookups inside it waiting on a lock of `customers`,
    and the connection holding that lock (closing it lets them go)."""
    await db.execute(
        "INSERT INTO customers (shop_id, customer_id) SELECT $1, g FROM generate_series(1, $2) g",
        shop.shop_id,
        IN_FLIGHT,
    )
    api = RoleProcess("api", role_env(settings, **env), tmp_path / "api.log").start()
    await api.wait_ready()
    headers = {"Authorization": f"Bearer {shop.read_key}"}

    async def lookup(customer: int) -> httpx.Response:
        # A client of its own per request: each in flight on its own connection.
        async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
            return await client.get(f"/v1/customers/{customer}/segments")

    assert (await lookup(1)).status_code == 200, api.log_tail()
    holder = await asyncpg.connect(settings.database_url)
    await holder.execute("BEGIN; LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
    lookups = [asyncio.create_task(lookup(c)) for c in range(1, IN_FLIGHT + 1)]

    async def all_waiting() -> bool:
        api.assert_alive()
        return bool(await db.fetchval(WAITING_ON_CUSTOMERS) == IN_FLIGHT)

    await poll(all_waiting, 10, f"{IN_FLIGHT} lookups to wait on the lock")
    return api, holder, lookups


async def test_sigterm_refuses_new_connections_and_answers_every_lookup_in_flight(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    api, holder, lookups = await _lookups_blocked_on_a_lock(settings, shop, db, tmp_path)
    try:
        signalled = api.terminate()

        async def refusing() -> bool:
            api.assert_alive()  # still draining: the lookups wait on the lock
            return await api.refuses_connections()

        await poll(refusing, BOUND_SECONDS / 2, "new connections to be refused while draining")
        assert not any(task.done() for task in lookups)
        await holder.close()
        answers = await asyncio.wait_for(asyncio.gather(*lookups), 10)
        code, took = await api.exit_after(signalled, BOUND_SECONDS + 5)
    finally:
        await holder.close()
        await asyncio.gather(*lookups, return_exceptions=True)
        await api.stop()
    assert [a.status_code for a in answers] == [200] * IN_FLIGHT, [a.text for a in answers]
    assert [a.json()["customer_id"] for a in answers] == [str(c) for c in range(1, IN_FLIGHT + 1)]
    assert code == 0, api.log_tail()
    assert took < BOUND_SECONDS, f"took {took:.1f} s to exit"


async def test_a_stop_stuck_past_its_bound_exits_1_and_logs_what_it_abandoned(
    settings: Settings, shop: ShopCredentials, db: asyncpg.Connection, tmp_path: Path
) -> None:
    bound = 1.5
    api, holder, lookups = await _lookups_blocked_on_a_lock(
        settings, shop, db, tmp_path, SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS=str(bound)
    )
    try:
        signalled = api.terminate()
        # The lock is never released: the lookups cannot finish, so the bound must end it.
        code, took = await api.exit_after(signalled, bound + 10)
    finally:
        await holder.close()
        await asyncio.gather(*lookups, return_exceptions=True)
        await api.stop()
    assert code == 1, api.log_tail()
    assert bound <= took < bound + 3, f"exited {took:.1f} s after SIGTERM"
    lines = [json.loads(line) for line in api.log_tail(20_000).splitlines() if line.startswith("{")]
    (hard,) = [
        line
        for line in lines
        if line.get("shutdown_timeout_seconds") == bound and line["level"] == "ERROR"
    ]
    assert hard["still_running"] == [f"{IN_FLIGHT} HTTP request(s)"], hard
