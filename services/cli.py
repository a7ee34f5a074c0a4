"""The `segflow` command: dev, ingest, segmenter, api, tagger, mailbox, shopify-standin,
migrate, topics, demo, shops, import."""

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import uvicorn
from fastapi import FastAPI

from services.common.db import migrate
from services.common.logging import configure_logging
from services.common.serve import (
    make_server,
    reuse_port_socket,
    serve_until,
    stop_event_on_signals,
)
from services.common.settings import Settings
from services.common.shops import ShopExistsError


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _role_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    """A role's HTTP server: requests in flight at a stop may take as long as the role's
    whole stop may (SEGFLOW_SHUTDOWN_TIMEOUT_SECONDS, enforced by serve_until)."""
    return make_server(app, host, port, graceful_seconds=None)


async def _cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from services.dev.stack import run_dev

    return await run_dev(settings, monitoring=args.with_monitoring)


async def _cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    """Serve ingest; exit 1 when it could not start (no database or broker), 0 after a signal.

    With SEGFLOW_INGEST_REUSE_PORT several of these processes share one port.
    """
    from services.ingest.app import create_app

    settings.require_database_url()
    settings.require_kafka()
    stop = stop_event_on_signals()
    server = _role_server(create_app(settings), settings.host, settings.ingest_port)
    shared = None
    if settings.ingest_reuse_port:
        shared = {server: [reuse_port_socket(settings.host, settings.ingest_port)]}
    bound = settings.shutdown_timeout_seconds
    return 0 if await serve_until([server], stop, listen_on=shared, shutdown_timeout=bound) else 1


async def _cmd_segmenter(settings: Settings, args: argparse.Namespace) -> int:
    """Run the consumer, scheduler and outbox, with /healthz, /readyz and /metrics on
    SEGFLOW_SEGMENTER_HEALTH_PORT; exit 1 when the consumer could not start or died (the
    endpoint never outlives it), 0 after SIGINT/SIGTERM with the batch in hand committed."""
    from services.common.metrics import new_registry
    from services.segmenter.runtime.health import SegmenterHealth, create_health_app
    from services.segmenter.runtime.metrics import SegmenterMetrics
    from services.segmenter.runtime.service import run_segmenter

    settings.require_database_url()
    settings.require_kafka()
    stop = stop_event_on_signals()
    registry = new_registry()
    health = SegmenterHealth()
    metrics = SegmenterMetrics.create(registry)
    app = create_health_app(health, registry)
    server = _role_server(app, settings.host, settings.segmenter_health_port)

    async def segmenter(stop: asyncio.Event) -> None:
        await run_segmenter(settings, metrics, stop, health=health)

    bound = settings.shutdown_timeout_seconds
    return 0 if await serve_until([server], stop, [segmenter], shutdown_timeout=bound) else 1


async def _cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the REST API; exit 1 when it could not start (no database), 0 after a signal."""
    from services.api.app import create_app

    settings.require_database_url()
    stop = stop_event_on_signals()
    server = _role_server(create_app(settings), settings.host, settings.api_port)
    bound = settings.shutdown_timeout_seconds
    return 0 if await serve_until([server], stop, shutdown_timeout=bound) else 1


async def _cmd_mailbox(settings: Settings, args: argparse.Namespace) -> int:
    """Run the local SMTP server alone until SIGINT/SIGTERM; exit 1 when its port is taken."""
    from services.dev.mailbox import LocalMailbox

    stop = stop_event_on_signals()
    directory = settings.mailbox_directory()
    mailbox = LocalMailbox(settings.smtp_host, settings.smtp_port, directory)
    if settings.mailbox_refuse:
        code, count = settings.mailbox_refuse.split(":")
        mailbox.refuse_next(int(count), int(code))
    try:
        await mailbox.start()
    except OSError as exc:
        _out(f"mailbox: cannot listen on {settings.smtp_host}:{settings.smtp_port}: {exc}")
        return 1
    try:
        _out(f"mailbox on {settings.smtp_host}:{mailbox.port}, keeping messages in {directory}")
        await stop.wait()
    finally:
        await mailbox.stop()
    return 0


async def _cmd_shopify_standin(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the Shopify Admin GraphQL stand-in until SIGINT/SIGTERM (exit 0), 1 if it failed."""
    from services.shopify_standin.app import create_app

    stop = stop_event_on_signals()
    app = create_app()
    server = make_server(app, settings.shopify_standin_host, settings.shopify_standin_port)
    return 0 if await serve_until([server], stop) else 1


async def _cmd_tagger(settings: Settings, args: argparse.Namespace) -> int:
    """Run the tagger's consumer and tag reconciler, with its HTTP API on SEGFLOW_TAGGER_PORT;
    exit 1 when it could not start or a task died, 0 after SIGINT/SIGTERM."""
    from services.common.metrics import new_registry
    from services.tagger.app import create_app
    from services.tagger.email.metrics import EmailMetrics
    from services.tagger.metrics import TaggerMetrics
    from services.tagger.service import TaggerHealth, run_tagger
    from services.tagger.shopify.metrics import ShopifyClientMetrics

    settings.require_database_url()
    settings.require_kafka()
    stop = stop_event_on_signals()
    registry = new_registry()
    health = TaggerHealth()
    metrics = TaggerMetrics.create(registry)
    client_metrics = ShopifyClientMetrics.create(registry)
    email_metrics = EmailMetrics.create(registry)
    server = _role_server(
        create_app(settings, health, registry), settings.host, settings.tagger_port
    )

    async def tagger(stop: asyncio.Event) -> None:
        await run_tagger(
            settings, metrics, client_metrics, stop, health, email_metrics=email_metrics
        )

    bound = settings.shutdown_timeout_seconds
    return 0 if await serve_until([server], stop, [tagger], shutdown_timeout=bound) else 1


async def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    conn = await asyncpg.connect(settings.require_database_url())
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    _out(f"applied {len(applied)} migration(s)" + (f": {applied}" if applied else ""))
    return 0


async def _cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from services.common.kafka import ensure_topics, wait_for_broker

    bootstrap = settings.require_kafka()
    await wait_for_broker(bootstrap)
    created = await ensure_topics(
        bootstrap,
        [settings.topic_events, settings.topic_segment_changes, settings.topic_dead_letter],
        settings.topic_partitions,
        settings.topic_replication_factor,
        settings.topic_retention_hours,
    )
    _out(f"created {created}" if created else "all topics exist")
    return 0


async def _cmd_shops_create(settings: Settings, args: argparse.Namespace) -> int:
    from services.api.admin import register_shop

    conn = await asyncpg.connect(settings.require_database_url())
    try:
        done = await register_shop(
            conn, args.domain, datetime.now(UTC), webhook_secret=args.webhook_secret
        )
    except ShopExistsError:
        _out(
            f"shop {args.domain} exists already; issue a new key with "
            f"`segflow shops rotate {args.domain} KIND`"
        )
        return 1
    except ValueError as exc:
        _out(str(exc))
        return 2
    finally:
        await conn.close()
    creds = done.credentials
    _out(f"shop            {creds.domain}")
    _out(f"webhook secret  {creds.webhook_secret}")
    _out(f"admin token     {creds.api_token}   (server side only: everything of the shop)")
    _out(f"read key        {creds.read_key}   (GET /v1/customers/ID/segments only)")
    _out(f"events key      {creds.events_key}   (POST /v1/events only; may sit in a storefront)")
    _out(f"Flow secret     {creds.flow_secret}")
    _out("These are shown once; segflow keeps only hashes of the keys and the Flow secret.")
    if done.segments_installed:
        _out(
            f"Installed {done.segments_installed} built-in segments "
            "(edit or remove them over the API)."
        )
    if done.journeys_installed:
        _out(
            f"Installed {done.journeys_installed} built-in email journeys "
            "(edit or remove them over the API)."
        )
    return 0


async def _cmd_shops_rotate(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from services.common.shops import Kind, UnknownShopError, rotate_credential

    conn = await asyncpg.connect(settings.require_database_url())
    try:
        rotated = await rotate_credential(
            conn,
            args.domain,
            Kind(args.kind),
            grace=timedelta(seconds=args.grace_seconds),
            secret=args.webhook_secret,
        )
    except UnknownShopError:
        _out(f"no shop {args.domain}")
        return 2
    except ValueError as exc:
        _out(str(exc))
        return 2
    finally:
        await conn.close()
    _out(f"new {rotated.kind.value:<8} {rotated.secret}")
    if rotated.previous_expire_at is None:
        _out("There was no previous one.")
    else:
        _out(f"The previous ones work until {rotated.previous_expire_at.isoformat()}.")
    _out("Shown once; segflow keeps only a hash (the webhook secret in clear).")
    return 0


async def _cmd_shops_connect(settings: Settings, args: argparse.Namespace) -> int:
    from services.common.sealing import SealingError
    from services.tagger.connections import connect_shop
    from services.tagger.shopify.errors import ShopifyError

    conn = await asyncpg.connect(settings.require_database_url())
    try:
        shop_id = await conn.fetchval("SELECT id FROM shops WHERE domain = $1", args.domain)
        if shop_id is None:
            _out(f"no shop {args.domain}; create it first: `segflow shops create {args.domain}`")
            return 2
        connected = await connect_shop(
            conn,
            settings,
            shop_id,
            args.domain,
            args.admin_token,
            admin_url=args.admin_url,
            callback_url=args.callback_url,
            respect_manual_removals=not args.restore_manual_removals,
        )
    except SealingError as exc:
        _out(str(exc))
        return 2
    except ShopifyError as exc:
        _out(f"Shopify did not accept the token: {exc}")
        return 1
    finally:
        await conn.close()
    access = connected.access
    _out(f"connected {args.domain} ({access.shop_name}); the admin token is stored sealed")
    _out(f"time zone: {access.iana_timezone or 'unknown (quiet hours use the default)'}")
    if access.missing_scopes:
        _out(f"missing scopes: {', '.join(access.missing_scopes)}")
    if connected.webhooks is not None:
        hooks = connected.webhooks
        _out(f"webhooks: {len(hooks.kept)} kept, {len(hooks.created)} created")
        for topic, errors in hooks.failed:
            _out(f"webhook {topic} refused: {'; '.join(e.message for e in errors)}")
    _out(f"{connected.marked} customers queued for a look at their tags")
    return 0 if access.ok and not (connected.webhooks and connected.webhooks.failed) else 1


async def _cmd_shops_list(settings: Settings, args: argparse.Namespace) -> int:
    from services.common.shops import list_shops

    conn = await asyncpg.connect(settings.require_database_url())
    try:
        shops = await list_shops(conn)
    finally:
        await conn.close()
    for shop in shops:
        keys = " ".join(
            c.kind.value + (f"(until {c.expires_at.isoformat()})" if c.expires_at else "")
            for c in shop.credentials
        )
        _out(f"{shop.id}\t{shop.domain}\t{shop.created_at.isoformat()}\t{keys}")
    return 0


async def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from services.demo.sender import send_demo
    from services.demo.stream import demo_stream

    secret = args.webhook_secret or settings.demo_webhook_secret
    if not secret:
        _out("give --webhook-secret (printed by `segflow dev`) or set SEGFLOW_DEMO_WEBHOOK_SECRET")
        return 2
    url = args.url or f"http://{settings.host}:{settings.ingest_port}"
    webhooks = demo_stream(args.seed, datetime.now(UTC), customers=args.customers)
    report = await send_demo(url, args.shop or settings.demo_shop_domain, secret, webhooks)
    _out(
        f"sent {report.sent} webhooks to {url}: {report.accepted} accepted, "
        f"rejected {dict(report.rejected) or 0}, failed {report.failed}"
    )
    return 0 if report.accepted == report.sent else 1


# The summary lists this many rejected rows; the count covers the rest.
_REJECTIONS_SHOWN = 20


async def _cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from services.common.db import create_pool
    from services.segmenter.importer.runner import (
        Progress,
        UnknownShopError,
        UnreadableFileError,
        import_files,
    )

    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        _out(f"no such file: {', '.join(missing)}")
        return 2
    if args.batch_size < 1:
        _out("--batch-size must be at least 1")
        return 2

    def progress(p: Progress) -> None:
        _out(
            f"{p.file}: {p.rows_read} rows read so far, {p.events_applied} applied, "
            f"{p.duplicates} duplicates, {p.rejected} rejected ({p.rows_per_second:.0f} rows/s)"
        )

    pool = await create_pool(settings.require_database_url(), min_size=1, max_size=2)
    try:
        report = await import_files(
            pool,
            args.shop,
            args.files,
            batch_size=args.batch_size,
            exported_at=args.exported_at,
            progress=progress,
        )
    except (UnknownShopError, UnreadableFileError) as exc:
        _out(str(exc))
        return 2
    finally:
        await pool.close()
    _out(
        f"imported {len(args.files)} file(s) into {args.shop}: {report.rows_read} rows read, "
        f"{report.events_applied} events applied, {report.duplicates} duplicates "
        f"(already imported), {report.rejected_count} rejected, "
        f"{report.segment_changes} segment changes in {report.seconds:.1f} s "
        f"({report.rows_per_second:.0f} rows/s)"
    )
    for row in report.rejected[:_REJECTIONS_SHOWN]:
        _out(f"rejected {row.file}:{row.line}: {row.reason}")
    if report.rejected_count > _REJECTIONS_SHOWN:
        _out(f"... and {report.rejected_count - _REJECTIONS_SHOWN} more rejected rows")
    return 1 if report.rejected_count else 0


def _aware_time(text: str) -> datetime:
    """An ISO 8601 time with its UTC offset, for arguments."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset (add Z or +hh:mm)")
    return moment.astimezone(UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run everything on one machine (embedded PostgreSQL + Kafka)")
    dev.add_argument(
        "--with-monitoring",
        action="store_true",
        help="also run a local Prometheus (Debian's `prometheus` on PATH) scraping every role, "
        "with the alert rules, on SEGFLOW_PROMETHEUS_PORT (9090)",
    )
    sub.add_parser("ingest", help="run the ingest service (needs DATABASE_URL, Kafka)")
    sub.add_parser("segmenter", help="run a segmenter: consumer, scheduler, outbox (same needs)")
    sub.add_parser("api", help="run the REST API (needs DATABASE_URL)")
    sub.add_parser(
        "mailbox",
        help="run the local SMTP server alone; it keeps every message as an .eml file",
    )
    sub.add_parser(
        "shopify-standin",
        help="serve the local stand-in for Shopify's Admin GraphQL API (tests, segflow dev)",
    )
    sub.add_parser("tagger", help="run the tagger: Shopify tags from segment changes (same needs)")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("topics", help="create the Kafka topics that do not exist yet")

    demo = sub.add_parser("demo", help="post a realistic stream of signed webhooks to ingest")
    demo.add_argument("--url", help="ingest base URL (default: from settings)")
    demo.add_argument("--shop", help="shop domain (default: the demo shop)")
    demo.add_argument("--webhook-secret", help="the shop's webhook secret")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--customers", type=int, default=20)

    shops = sub.add_parser("shops", help="manage shops").add_subparsers(
        dest="action", required=True
    )
    create = shops.add_parser(
        "create", aliases=["add"], help="register a shop and print its credentials once"
    )
    create.add_argument("domain")
    create.add_argument(
        "--webhook-secret", help="the Shopify app's webhook secret (else generated)"
    )
    rotate = shops.add_parser(
        "rotate",
        help="issue a new key of one kind; the previous ones keep working for the grace",
    )
    rotate.add_argument("domain")
    rotate.add_argument("kind", choices=["admin", "read", "events", "flow", "webhook"])
    rotate.add_argument(
        "--grace-seconds",
        type=int,
        default=86_400,
        help="how long the previous ones keep working (default 24 h; 0 revokes them at once)",
    )
    rotate.add_argument(
        "--webhook-secret", help="webhook kind only: the new secret Shopify shows (else generated)"
    )
    shops.add_parser("list", help="list shops and their live credentials (never a secret)")
    connect = shops.add_parser(
        "connect", help="store a shop's Admin API token (sealed) and register its webhooks"
    )
    connect.add_argument("domain")
    connect.add_argument("--admin-token", required=True, help="the shop's Admin API access token")
    connect.add_argument("--callback-url", help="where Shopify sends the webhooks (ingest)")
    connect.add_argument("--admin-url", help="another Admin API root (the local stand-in)")
    connect.add_argument(
        "--restore-manual-removals",
        action="store_true",
        help="put a managed tag back when someone removes it by hand (default: respect it)",
    )

    imports = sub.add_parser(
        "import",
        help="import existing customers, orders and products from export files",
        description="Import Shopify exports into one shop: the admin customer CSV export, and "
        "JSONL from Admin GraphQL bulk operations or REST objects (customers, orders, products). "
        "Importing the same files again applies nothing new. Exit status: 0 when every row was "
        "imported, 1 when some rows were rejected, 2 on usage errors.",
    )
    imports.add_argument("--shop", required=True, help="the shop's domain, e.g. x.myshopify.com")
    imports.add_argument("files", nargs="+", type=Path, metavar="FILE", help=".csv or .jsonl")
    imports.add_argument("--batch-size", type=int, default=2000, help="events per transaction")
    imports.add_argument(
        "--exported-at",
        type=_aware_time,
        help="when the files were exported (ISO 8601 with offset); Shopify's totals in them "
        "cover the orders placed until then (default: each file's modification time)",
    )
    return parser


COMMANDS = {
    "dev": _cmd_dev,
    "ingest": _cmd_ingest,
    "segmenter": _cmd_segmenter,
    "api": _cmd_api,
    "mailbox": _cmd_mailbox,
    "shopify-standin": _cmd_shopify_standin,
    "migrate": _cmd_migrate,
    "topics": _cmd_topics,
    "demo": _cmd_demo,
    ("shops", "create"): _cmd_shops_create,
    ("shops", "add"): _cmd_shops_create,
    ("shops", "rotate"): _cmd_shops_rotate,
    ("shops", "list"): _cmd_shops_list,
    ("shops", "connect"): _cmd_shops_connect,
    "tagger": _cmd_tagger,
    "import": _cmd_import,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `segflow` console command."""
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level)
    key = (args.command, args.action) if args.command == "shops" else args.command
    try:
        return asyncio.run(COMMANDS[key](settings, args))
    except RuntimeError as exc:
        _out(f"segflow: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
