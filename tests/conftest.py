"""Fixtures for the real services: PostgreSQL and a Kafka-protocol broker, started once per session.

DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS set → those are used, and the run stops at once with one
message if they do not answer; unset → the embedded pair. Each test gets its own database (a
copy of this session's migrated template) and its own topics.
"""

import asyncio
import gc
import inspect
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.common.db import migrate
from services.common.kafka import ensure_topics, wait_for_broker
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.dev.embedded import EmbeddedPostgres
from services.dev.mailbox import LocalMailbox
from services.dev.stack import create_database, redact_dsn, with_database
from services.shopify_standin.server import RunningStandin, running_standin
from services.shopify_standin.webhooks import DeliveryPolicy
from tests.helpers import (
    BrokerFactory,
    ConsumedRecord,
    WebhookReceiver,
    WebhookSink,
    consume,
    free_port,
    server_directory,
    start_server,
    stop_run,
)

# An external server named by the environment must answer within this long, or the run stops.
EXTERNAL_SERVER_WAIT = 10.0


async def _require_postgres(dsn: str) -> None:
    """Stop the run, with one message, unless the PostgreSQL at DATABASE_URL accepts a
    connection within EXTERNAL_SERVER_WAIT. Network errors are retried until then (it may be
    starting); a refusal by PostgreSQL itself (a wrong password, no such database) is final."""
    deadline = time.monotonic() + EXTERNAL_SERVER_WAIT
    while True:
        try:
            conn = await asyncpg.connect(dsn, timeout=max(0.5, deadline - time.monotonic()))
        except OSError as exc:  # TimeoutError included
            error: Exception = exc
            if time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                continue
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            error = exc
        else:
            await conn.close()
            return
        stop_run(
            f"DATABASE_URL={redact_dsn(dsn)}: no PostgreSQL accepted a connection there "
            f"within {EXTERNAL_SERVER_WAIT:.0f} s ({type(error).__name__}: {error})"
        )


@pytest.fixture(scope="session")
async def postgres_server_dsn() -> AsyncIterator[str]:
    """The server every test database lives on: DATABASE_URL's, else an embedded one."""
    external = os.environ.get("DATABASE_URL")
    if external:
        await _require_postgres(external)
        yield external
        return
    with server_directory("segflow-test-pg-") as directory:
        server = EmbeddedPostgres(directory / "data")
        try:
            dsn = server.start()
        except Exception as exc:  # noqa: BLE001 - any failure here means no database for the run
            log = server.data_dir / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            stop_run(f"embedded PostgreSQL did not start: {exc}\n{tail}")
        try:
            yield dsn
        finally:
            server.stop()


@pytest.fixture
def server_tmp_path() -> Iterator[Path]:
    """Like tmp_path, for a test that starts its own embedded PostgreSQL (see server_directory)."""
    with server_directory("segflow-test-") as directory:
        yield directory


@pytest.fixture(scope="session")
def broker_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerFactory]:
    factory = BrokerFactory(tmp_path_factory.mktemp("brokers"))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
async def kafka_bootstrap(broker_factory: BrokerFactory) -> str:
    """The broker every test's topics live on: KAFKA_BOOTSTRAP_SERVERS', else an embedded one."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        try:
            await wait_for_broker(external, timeout=EXTERNAL_SERVER_WAIT)
        except TimeoutError as exc:
            stop_run(
                f"KAFKA_BOOTSTRAP_SERVERS={external}: no Kafka broker answered there "
                f"within {EXTERNAL_SERVER_WAIT:.0f} s ({exc})"
            )
        return external
    return (await broker_factory.start()).bootstrap_servers


@pytest.fixture(scope="session")
async def template_database(postgres_server_dsn: str) -> AsyncIterator[str]:
    """A migrated database that every test's database is copied from.

    Its name is this session's own, so sessions sharing one server (two CI jobs, a developer
    next to CI) never drop each other's; it is dropped when the session ends.
    """
    name = f"segflow_test_template_{uuid.uuid4().hex[:12]}"
    await create_database(postgres_server_dsn, name)
    try:
        conn = await asyncpg.connect(with_database(postgres_server_dsn, name))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield name
    finally:
        conn = await asyncpg.connect(postgres_server_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture
async def database_url(postgres_server_dsn: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of this test's own, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    finally:
        await conn.close()
    yield with_database(postgres_server_dsn, name)
    conn = await asyncpg.connect(postgres_server_dsn)
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    yield created
    await created.close()


@pytest.fixture
async def settings(database_url: str, kafka_bootstrap: str) -> Settings:
    """Settings pointing at this test's database and topics of its own, on free ports."""
    suffix = uuid.uuid4().hex[:8]
    built = Settings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        ingest_port=free_port(),
        api_port=free_port(),
        topic_events=f"segflow.events.{suffix}",
        topic_segment_changes=f"segflow.segment-changes.{suffix}",
        topic_dead_letter=f"segflow.dead-letter.{suffix}",
        topic_partitions=3,
        produce_timeout_seconds=2.0,
        segmenter_group=f"segflow-segmenter.{suffix}",
        tagger_group=f"segflow-tagger.{suffix}",
        tagger_port=free_port(),
        consumer_session_timeout_ms=2_000,
        # Tests drive many calls in a row; the rate-limit tests set limits of their own.
        rate_limit_read_per_second=0,
        rate_limit_write_per_second=0,
        rate_limit_events_per_second=0,
    )
    await ensure_topics(
        kafka_bootstrap,
        [built.topic_events, built.topic_segment_changes, built.topic_dead_letter],
        built.topic_partitions,
    )
    return built


@pytest.fixture
async def shop(db: asyncpg.Connection) -> ShopCredentials:
    """The test shop with one credential of each kind: `api_token` (admin), `read_key`,
    `events_key`, `flow_secret`, `webhook_secret` (`shop.of(Kind.READ)` by kind)."""
    return await create_shop(db, "test-shop.myshopify.com")


@pytest.fixture(autouse=True)
async def _fail_on_loop_errors(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A test fails if the event loop saw an exception nobody handled, including one that
    surfaces only when its task is garbage-collected ("Task exception was never retrieved").

    The collection runs while this test's handler is still installed: a task's finaliser
    reports to whatever handler the loop has at that moment. It also turns clients never
    closed into ResourceWarnings (errors, see pyproject) here rather than at interpreter exit.
    A synchronous test starts no task, so it is spared the collection (it costs more than
    most unit tests).
    """
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield
        # Callbacks the test left scheduled run first, so their tasks finish and are freed.
        await asyncio.sleep(0)
        if inspect.iscoroutinefunction(getattr(request, "function", None)):
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    problems = [f"{c.get('message')}: {c.get('exception')!r}" for c in seen]
    assert not seen, f"unhandled exceptions in the event loop: {problems}"


@pytest.fixture
def read_topic(kafka_bootstrap: str) -> Any:
    """`await read_topic(topic, n)`: the first n records of a topic, read with a real consumer."""

    async def read(topic: str, count: int, timeout: float = 15.0) -> list[ConsumedRecord]:
        return await consume(kafka_bootstrap, topic, count, timeout)

    return read


@pytest.fixture
async def ingest_url(settings: Settings) -> AsyncIterator[str]:
    """The ingest service on a free port, over real HTTP; stopped after the test."""
    from services.common.serve import make_server
    from services.ingest.app import create_app

    server = make_server(create_app(settings), "127.0.0.1", settings.ingest_port)
    task = await start_server(server)
    yield f"http://127.0.0.1:{settings.ingest_port}"
    server.should_exit = True
    await task


@pytest.fixture
async def mailbox(tmp_path: Path) -> AsyncIterator[LocalMailbox]:
    """A real local SMTP server on a free port, keeping messages under tmp_path; stopped after."""
    async with LocalMailbox("127.0.0.1", 0, tmp_path / "mail", stop_grace_seconds=0.5) as box:
        yield box


@pytest.fixture(scope="session")
async def shopify_standin() -> AsyncIterator[RunningStandin]:
    """The Shopify Admin API stand-in on a free port, over real HTTP, for the whole session:
    each test makes shops of its own (see `standin_domain`). Webhook retries are quick so a
    test sees them within its time."""
    policy = DeliveryPolicy(attempts=3, retry_initial_seconds=0.05, timeout_seconds=2.0)
    async with running_standin(policy=policy) as standin:
        yield standin


@pytest.fixture
def standin_domain() -> str:
    """A shop domain no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}.myshopify.com"


@pytest.fixture(scope="session")
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    """A real HTTP server receiving webhook deliveries for every test of the session."""
    from services.common.serve import make_server

    sink = WebhookSink()
    port = free_port()
    server = make_server(sink, "127.0.0.1", port)  # type: ignore[arg-type]
    task = await start_server(server)
    sink.base_url = f"http://127.0.0.1:{port}"
    yield sink
    server.should_exit = True
    await task


@pytest.fixture
def webhook_receiver(webhook_sink: WebhookSink) -> Iterator[WebhookReceiver]:
    """This test's webhook endpoint on the shared sink; it checks every delivery's signature
    against the secret the tests' stand-in shops use."""
    receiver = webhook_sink.receiver("standin-webhook-secret")
    yield receiver
    webhook_sink.receivers.pop(receiver.url.removeprefix(webhook_sink.base_url), None)
