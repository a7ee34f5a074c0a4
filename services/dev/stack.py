"""`segflow dev`: the whole system on one machine, on the embedded pair unless told otherwise.

Every role runs as its own OS process, as in production (`segflow ingest`, `segflow
segmenter`, `segflow api`, `segflow tagger`), started and stopped by the supervisor. The
local stand-ins for Shopify's Admin API and for SMTP run inside the supervisor itself.
"""

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from services.common.db import migrate
from services.common.kafka import ensure_topics, wait_for_broker
from services.common.metrics import MULTIPROCESS_DIR_VARIABLE
from services.common.serve import port_in_use, stop_event_on_signals
from services.common.settings import Settings
from services.common.shops import ShopCredentials, create_shop
from services.dev.demo_shopify import (
    DemoShopify,
    connect_demo_shop,
    dev_sealing_keys,
    dev_unsubscribe_keys,
)
from services.dev.embedded import EmbeddedBroker, EmbeddedPostgres
from services.dev.mailbox import LocalMailbox
from services.dev.monitoring import prometheus_binary, prometheus_role, prometheus_url
from services.dev.supervisor import ChildExitedError, Role, Supervisor, child_environment
from services.segmenter.storage.segments import install_templates
from services.tagger.journeys_store import install_journeys

logger = logging.getLogger(__name__)

DATABASE_NAME = "segflow"
DEMO_COUPON = "SEGFLOW-DEMO-10"


@dataclass
class Infrastructure:
    """The database and broker in use, and the embedded processes to stop afterwards (if any)."""

    database_url: str
    bootstrap_servers: str
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


def with_database(dsn: str, name: str) -> str:
    """The same server DSN pointing at database `name` (keeps `?host=` socket parameters)."""
    scheme, _, rest = dsn.partition("://")
    authority, slash, tail = rest.partition("/")
    _, question, query = tail.partition("?")
    return f"{scheme}://{authority}/{name}" + (question + query if question else "")


async def create_database(server_dsn: str, name: str) -> None:
    """CREATE DATABASE `name` unless it exists."""
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Identifiers cannot be bound parameters; `name` is our own constant, quoted anyway.
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def start_infrastructure(settings: Settings) -> Infrastructure:
    """Start the embedded PostgreSQL and broker where no external one is configured."""
    postgres = broker = None
    try:
        database_url = settings.database_url
        if not database_url:
            postgres = EmbeddedPostgres(settings.data_dir / "postgres")
            server_dsn = await asyncio.to_thread(postgres.start)
            await create_database(server_dsn, DATABASE_NAME)
            database_url = with_database(server_dsn, DATABASE_NAME)
            logger.info("embedded PostgreSQL running", extra={"data": str(postgres.data_dir)})
        bootstrap = settings.kafka_bootstrap_servers
        if not bootstrap:
            broker = EmbeddedBroker(
                settings.host, settings.broker_port, settings.data_dir / "broker.log"
            )
            bootstrap = broker.start()
        try:
            await wait_for_broker(bootstrap, timeout=30)
        except TimeoutError:
            if broker is not None:
                logger.error("broker did not start; its log:\n%s", broker.log_tail())
            raise
        return Infrastructure(database_url, bootstrap, postgres, broker)
    except BaseException:
        if broker is not None:
            broker.stop()
        if postgres is not None:
            postgres.stop()
        raise


async def prepare(settings: Settings, infra: Infrastructure) -> ShopCredentials:
    """Create topics, apply migrations and (re)issue the demo shop's credentials."""
    await ensure_topics(
        infra.bootstrap_servers,
        [settings.topic_events, settings.topic_segment_changes, settings.topic_dead_letter],
        settings.topic_partitions,
        settings.topic_replication_factor,
        settings.topic_retention_hours,
    )
    conn = await asyncpg.connect(infra.database_url)
    try:
        await migrate(conn)
        # Only hashes of tokens are stored, so the demo shop gets fresh ones (or the fixed
        # ones from the environment) at every start, to be printed for the developer.
        async with conn.transaction():
            demo = await create_shop(
                conn,
                settings.demo_shop_domain,
                webhook_secret=settings.demo_webhook_secret,
                api_token=settings.demo_api_token,
                flow_secret=settings.demo_flow_secret,
                read_key=settings.demo_read_key,
                events_key=settings.demo_events_key,
                replace=True,
            )
            await install_templates(conn, demo.shop_id, datetime.now(UTC))
            await install_journeys(conn, demo.shop_id, datetime.now(UTC))
        return demo
    finally:
        await conn.close()


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ***, fit to print."""
    return re.sub(r"(://[^:/@]*:)[^/]+@", r"\1***@", dsn)


def dev_operator_token(settings: Settings) -> str:
    """SEGFLOW_OPERATOR_TOKEN for this run: the environment's, else a fresh one (printed)."""
    if settings.operator_token is not None:
        return settings.operator_token.get_secret_value()
    return "sfop_" + secrets.token_urlsafe(32)


def banner(
    settings: Settings,
    infra: Infrastructure,
    demo: ShopCredentials,
    shopify: DemoShopify,
    operator_token: str,
    monitoring: bool = False,
) -> str:
    base = f"http://{settings.host}:{settings.ingest_port}"
    health = f"http://{settings.host}:{settings.segmenter_health_port}"
    members = settings.segmenter_processes
    prometheus = (
        [f"  prometheus      {prometheus_url(settings)}   (every role scraped; /alerts)"]
        if monitoring
        else []
    )
    return "\n".join(
        [
            "segflow is running (Ctrl-C stops everything)",
            f"  ingest          {base}   (/webhooks/shopify, /webhooks/flow, /v1/events)",
            f"  segmenter API   http://{settings.host}:{settings.api_port}"
            "   (/v1/customers/…, /v1/segments, /docs)",
            f"  segmenter       {health}   (/readyz, /metrics; member i on this port + i,"
            f" {members} member{'s' if members != 1 else ''})",
            f"  database        {redact_dsn(infra.database_url)}"
            f" ({'embedded' if infra.postgres else 'external'})",
            f"  kafka           {infra.bootstrap_servers}"
            f" ({'embedded, memory only' if infra.broker else 'external'})",
            f"  tagger          http://{settings.host}:{settings.tagger_port}"
            "   (/readyz, /metrics, /v1/tags/…, /v1/customers/{id}/tags)",
            f"  Shopify         {shopify.standin_url}   (the local stand-in; a customer's tags:"
            f" /_standin/shops/{demo.domain}/customers/ID)",
            f"  mail            smtp://{settings.smtp_host}:{settings.smtp_port}"
            f"   (every message kept in {settings.mailbox_directory()})",
            *prometheus,
            f"  demo shop       {demo.domain}",
            f"  webhook secret  {demo.webhook_secret}",
            f"  API token       {demo.api_token}   (the shop's admin token: server side only)",
            f"  read key        {demo.read_key}   (GET /v1/customers/ID/segments only)",
            f"  events key      {demo.events_key}   (POST /v1/events only: storefront)",
            f"  Flow secret     {demo.flow_secret}",
            f"  operator token  {operator_token}   (/v1/admin/… on the segmenter API)",
            f"  admin token     {shopify.admin_token}   (the demo shop's, on the stand-in)",
            "",
        ]
    )


def roles(settings: Settings, metrics_dir: Path) -> list[Role]:
    """The roles `segflow dev` runs, in the order they stop.

    Ingest first (no new events are accepted), then the segmenters (each finishes and commits
    the batch in hand), then the API. A new role is one more entry here.
    """
    host = settings.host
    ingest_env: dict[str, str] = {MULTIPROCESS_DIR_VARIABLE: str(metrics_dir / "ingest")}
    if settings.ingest_processes > 1:
        ingest_env["SEGFLOW_INGEST_REUSE_PORT"] = "true"
    if "webhook_max_age_seconds" not in settings.model_fields_set:
        # `segflow demo` replays a store's history with its own trigger times (months old),
        # which the freshness window would refuse as replays; a given window still applies.
        ingest_env["SEGFLOW_WEBHOOK_MAX_AGE_SECONDS"] = "0"

    def segmenter_port(index: int) -> int:
        return settings.segmenter_health_port + index

    return [
        Role(
            "ingest",
            processes=settings.ingest_processes,
            env=lambda index: ingest_env,
            ready_url=lambda index: f"http://{host}:{settings.ingest_port}/readyz",
            shared_port=settings.ingest_port,
        ),
        Role(
            "segmenter",
            processes=settings.segmenter_processes,
            env=lambda index: {"SEGFLOW_SEGMENTER_HEALTH_PORT": str(segmenter_port(index))},
            ready_url=lambda index: f"http://{host}:{segmenter_port(index)}/readyz",
        ),
        Role("api", ready_url=lambda index: f"http://{host}:{settings.api_port}/readyz"),
        Role("tagger", ready_url=lambda index: f"http://{host}:{settings.tagger_port}/readyz"),
    ]


def fresh_metrics_dir(settings: Settings) -> Path:
    """An empty directory for the multiprocess metrics of this run (the last run's removed)."""
    metrics_dir = (settings.data_dir / "metrics").resolve()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    (metrics_dir / "ingest").mkdir(parents=True)
    return metrics_dir


async def run_dev(settings: Settings, monitoring: bool = False) -> int:
    """Start the infrastructure and every role as a child process, run until SIGINT/SIGTERM
    or until something dies, then stop it all in order; return an exit code.

    With `monitoring`, a local Prometheus scrapes every role (it stops last)."""
    from pydantic import SecretStr

    from services.shopify_standin.server import running_standin

    # Before anything starts: a missing binary is a clear error, not a half-started stack.
    binary = prometheus_binary() if monitoring else None
    stop = stop_event_on_signals()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sealing_keys = dev_sealing_keys(settings)
    # Journey email carries one-click links: the tagger sends none without their keys.
    unsubscribe_keys = dev_unsubscribe_keys(settings)
    operator_token = dev_operator_token(settings)
    settings = settings.model_copy(
        update={
            "sealing_keys": SecretStr(sealing_keys),
            "unsubscribe_keys": SecretStr(unsubscribe_keys),
            "operator_token": SecretStr(operator_token),
        }
    )
    infra = await start_infrastructure(settings)
    supervisor: Supervisor | None = None
    watcher = asyncio.create_task(watch_broker(infra, stop))
    local = contextlib.AsyncExitStack()
    try:
        demo = await prepare(settings, infra)
        mailbox = LocalMailbox(settings.smtp_host, settings.smtp_port, settings.mailbox_directory())
        await local.enter_async_context(mailbox)
        standin = await local.enter_async_context(
            running_standin(settings.shopify_standin_host, settings.shopify_standin_port)
        )
        environment = child_environment(
            os.environ,
            DATABASE_URL=infra.database_url,
            KAFKA_BOOTSTRAP_SERVERS=infra.bootstrap_servers,
            SEGFLOW_SEALING_KEYS=sealing_keys,
            SEGFLOW_UNSUBSCRIBE_KEYS=unsubscribe_keys,
            SEGFLOW_OPERATOR_TOKEN=operator_token,
            # The shipped offer emails need a coupon: the demo's, unless one is given.
            SEGFLOW_JOURNEY_COUPON_CODE=settings.journey_coupon_code or DEMO_COUPON,
        )
        planned = roles(settings, fresh_metrics_dir(settings))
        if binary is not None:
            planned.append(prometheus_role(settings, binary))
        taken = [
            (role.shared_port, role.name)
            for role in planned
            if role.shared_port is not None and port_in_use(settings.host, role.shared_port)
        ]
        if taken:
            logger.error("segflow dev could not start: port %s (%s) is in use already", *taken[0])
            return 1
        supervisor = Supervisor(
            planned,
            environment=environment,
            ready_timeout=settings.dev_ready_timeout_seconds,
            stop_timeout=settings.dev_stop_timeout_seconds,
        )
        try:
            started = await supervisor.start(stop)
        except ChildExitedError as exc:
            await supervisor.report_death(exc.child)
            return 1
        except TimeoutError as exc:
            logger.error("segflow dev could not start: %s", exc)
            return 1
        if started:
            shopify = await connect_demo_shop(settings, infra.database_url, demo, standin.url)
            # The banner says "running" once every process of every role is ready.
            sys.stdout.write(
                banner(settings, infra, demo, shopify, operator_token, binary is not None)
            )
            sys.stdout.flush()
            if await supervisor.watch(stop) is not None:
                return 1
        return 1 if watcher.done() and watcher.result() else 0
    finally:
        if supervisor is not None:
            await supervisor.stop()
        await local.aclose()
        watcher.cancel()
        await asyncio.to_thread(infra.stop)
        logger.info("segflow stopped")


async def watch_broker(infra: Infrastructure, stop: asyncio.Event) -> bool:
    """Stop everything if the embedded broker dies (True then): without it, ingest can only 503."""
    if infra.broker is None:
        return False
    while not stop.is_set():
        code = infra.broker.exit_code()
        if code is not None:
            logger.error("embedded broker exited with %s; log:\n%s", code, infra.broker.log_tail())
            stop.set()
            return True
        await asyncio.sleep(0.5)
    return False
