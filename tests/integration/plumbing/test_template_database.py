"""Two test sessions against one PostgreSQL: each migrates a template database of its own and
drops it at its end, so neither drops the other's while it is still copying from it.
"""

import asyncio
from pathlib import Path

import asyncpg

from tests.helpers import run_pytest

# Runs as a second session, with this session's server as its external DATABASE_URL.
INNER = """
import os

import asyncpg


async def test_a_second_session_has_a_template_of_its_own(
    postgres_server_dsn: str, template_database: str, db: asyncpg.Connection
) -> None:
    outer = os.environ["OUTER_TEMPLATE"]
    assert template_database != outer
    conn = await asyncpg.connect(postgres_server_dsn)
    try:
        names = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()
    assert {outer, template_database} <= names
"""


async def test_each_session_has_its_own_template_and_drops_it(
    tmp_path: Path, postgres_server_dsn: str, template_database: str
) -> None:
    async def databases() -> set[str]:
        conn = await asyncpg.connect(postgres_server_dsn)
        try:
            return {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        finally:
            await conn.close()

    before = await databases()
    run = await asyncio.to_thread(
        run_pytest,
        tmp_path,
        INNER,
        {"DATABASE_URL": postgres_server_dsn, "OUTER_TEMPLATE": template_database},
    )
    assert run.returncode == 0, run.stdout
    assert "1 passed" in run.stdout, run.stdout
    after = await databases()
    # Ours is still there, and the other session left nothing behind.
    assert template_database in after
    assert after == before
