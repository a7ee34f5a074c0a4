"""PostgreSQL wiring: the asyncpg pool and the migrations runner."""

import logging
from dataclasses import dataclass
from importlib import resources

import asyncpg

logger = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every process running migrations.
_MIGRATION_LOCK_ID = 0x5E6F10

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
APPLIED_VERSIONS = "SELECT version FROM schema_migrations"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
SERVER = "SELECT current_setting('server_version_num')::int, current_setting('server_encoding')"

# Case-insensitive rules compile to casefold(... COLLATE pg_unicode_fast), both new in
# PostgreSQL 18; that collation exists in UTF-8 databases only (segmenter/domain/rules/folding).
MIN_SERVER_VERSION_NUM = 180000
SERVER_ENCODING = "UTF8"


class UnsupportedServerError(RuntimeError):
    """The PostgreSQL server cannot run segflow's SQL."""


def _version_text(version_num: int) -> str:
    # server_version_num is MMmmmm from PostgreSQL 10 on, MMmmpp before.
    if version_num >= 100000:
        return f"{version_num // 10000}.{version_num % 10000}"
    return f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"


def check_server(version_num: int, encoding: str) -> None:
    """Raise UnsupportedServerError unless the server is PostgreSQL 18+ with a UTF-8 database."""
    if version_num < MIN_SERVER_VERSION_NUM:
        raise UnsupportedServerError(
            f"PostgreSQL {_version_text(version_num)} is too old: segflow needs PostgreSQL "
            f"{MIN_SERVER_VERSION_NUM // 10000} or later "
            "(for casefold() and the pg_unicode_fast collation)"
        )
    if encoding.upper() != SERVER_ENCODING:
        raise UnsupportedServerError(
            f"the database's encoding is {encoding}: segflow needs a UTF8 database "
            "(CREATE DATABASE ... ENCODING 'UTF8')"
        )


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The numbered `NNNN_name.sql` files shipped in services/common/migrations, in order."""
    found = []
    for entry in resources.files("services.common.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number, _, rest = entry.name.partition("_")
        found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply every migration not yet recorded, each in its own transaction; return those applied.

    A server segflow cannot run on is refused first (UnsupportedServerError), before any change.
    """
    check_server(*await conn.fetchrow(SERVER))
    applied_now = []
    # The advisory lock makes concurrent starts (several replicas) apply each file once.
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        done = {row["version"] for row in await conn.fetch(APPLIED_VERSIONS)}
        for migration in load_migrations():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(RECORD_MIGRATION, migration.version, migration.name)
            logger.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied_now


async def create_pool(
    dsn: str,
    min_size: int = 1,
    max_size: int = 10,
    *,
    statement_timeout: float | None = None,
    lock_timeout: float | None = None,
    reset_session: bool = True,
) -> asyncpg.Pool:
    """Open an asyncpg pool; the caller closes it (`async with` or `await pool.close()`).

    The timeouts (seconds) are set on every connection, server-side.

    A released connection is always rolled back if a transaction is open. With
    `reset_session` (the default) asyncpg also sends RESET ALL, UNLISTEN, CLOSE ALL and
    pg_advisory_unlock_all() on every release: one more round trip per checkout. Pass False
    only for a pool whose users never leave session state behind (no session SET, LISTEN,
    cursors held outside a transaction or session-level advisory locks).
    """
    server_settings = {}
    if statement_timeout is not None:
        server_settings["statement_timeout"] = str(int(statement_timeout * 1000))
    if lock_timeout is not None:
        server_settings["lock_timeout"] = str(int(lock_timeout * 1000))
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=server_settings,
        reset=None if reset_session else _rollback_only,
    )


async def _rollback_only(conn: asyncpg.Connection) -> None:
    """A release without the session reset (the open transaction, if any, is rolled back by
    asyncpg itself before this is called)."""


async def database_ready(pool: asyncpg.Pool) -> bool:
    """True when the database answers a trivial query."""
    try:
        async with pool.acquire(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT 1", timeout=2) == 1)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        # InterfaceError: a pooled connection the server closed (it stopped or restarted).
        return False
