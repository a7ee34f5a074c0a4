"""The tagger service: its consumer, tag reconciler and journey send scheduler, with their
connections.

`run_tagger` returns only when `stop` is set; it raises when the consumer cannot start (no
broker within `startup_timeout_seconds`, no database) or a task dies of a bug, so the process
exits non-zero rather than serving /readyz without a consumer behind it.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.common.db import create_pool
from services.common.kafka import make_consumer, wait_for_broker
from services.common.settings import Settings
from services.dev.mailbox import MailboxStore
from services.segmenter.runtime.health import ComponentHealth
from services.segmenter.runtime.service import _close
from services.tagger.connections import ShopClients
from services.tagger.consent_sync import ConsentWriteback
from services.tagger.email.dkim import DkimSigner
from services.tagger.email.metrics import EmailMetrics
from services.tagger.email.sender import SmtpConfig, SmtpSender
from services.tagger.metrics import TaggerMetrics
from services.tagger.reconciler import TagReconciler
from services.tagger.scheduler import JourneyScheduler
from services.tagger.shopify.metrics import ShopifyClientMetrics
from services.tagger.worker import TaggerWorker

logger = logging.getLogger(__name__)


class TaggerHealth:
    """Shared by the tagger's tasks and its /readyz."""

    def __init__(self) -> None:
        self.consumer = ComponentHealth()
        self.reconciler = ComponentHealth()
        self.journeys = ComponentHealth()
        self.consent = ComponentHealth()

    @property
    def ready(self) -> bool:
        return self.consumer.ok and self.reconciler.state != "stopped"

    def report(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer.report(),
            "reconciler": self.reconciler.report(),
            "journeys": self.journeys.report(),
            "consent_writeback": self.consent.report(),
        }


def journey_scheduler(
    settings: Settings,
    pool: asyncpg.Pool,
    health: ComponentHealth,
    clock: Callable[[], datetime],
    metrics: EmailMetrics | None = None,
) -> JourneyScheduler | None:
    """The journey send loop, or None (logged) when no unsubscribe keys are configured: every
    journey email must carry a working one-click link, so none is sent without them."""
    if settings.unsubscribe_keys is None or not settings.unsubscribe_keys.get_secret_value():
        logger.warning("journey emails are off: SEGFLOW_UNSUBSCRIBE_KEYS is not set")
        health.stopped("off: no unsubscribe keys")
        return None
    # The local mailbox's folder can be searched by Message-ID to settle an interrupted send;
    # in production nothing is searched and such a send is `unknown` (never re-sent).
    lookup = (
        MailboxStore(settings.mailbox_directory())
        if settings.environment == "development"
        else None
    )
    sender = SmtpSender(SmtpConfig.from_settings(settings), DkimSigner.from_settings(settings))
    return JourneyScheduler(
        settings, pool, sender, health, lookup=lookup, metrics=metrics, clock=clock
    )


async def run_tagger(
    settings: Settings,
    metrics: TaggerMetrics,
    client_metrics: ShopifyClientMetrics,
    stop: asyncio.Event,
    health: TaggerHealth,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    email_metrics: EmailMetrics | None = None,
) -> None:
    """Consume and reconcile until `stop` is set; a task that dies stops the other, re-raised."""
    bootstrap = settings.require_kafka()
    await wait_for_broker(bootstrap, timeout=settings.startup_timeout_seconds)
    pool = await create_pool(
        settings.require_database_url(), settings.db_pool_min, settings.db_pool_max
    )
    consumer = make_consumer(
        bootstrap,
        settings.tagger_group,
        max_poll_interval_ms=settings.consumer_max_poll_interval_ms,
        session_timeout_ms=settings.consumer_session_timeout_ms,
        rebalance_timeout_ms=settings.consumer_rebalance_timeout_ms,
        fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
    )
    clients = ShopClients(settings, pool, client_metrics)
    try:
        reconciler = TagReconciler(settings, pool, clients, metrics, health.reconciler, clock)
        # The local mailbox keeps every message as a file: a redacted customer's go too.
        mailbox = (
            MailboxStore(settings.mailbox_directory())
            if settings.environment == "development"
            else None
        )
        worker = TaggerWorker(
            settings,
            pool,
            consumer,
            metrics,
            health.consumer,
            reconciler.poke,
            clock,
            erase_mail=mailbox.erase_recipient if mailbox is not None else None,
        )
        consumer.subscribe(
            [settings.topic_segment_changes, settings.topic_events], listener=worker.listener
        )
        await consumer.start()
        tasks = [
            asyncio.create_task(worker.run(stop), name="tagger-consumer"),
            asyncio.create_task(reconciler.run(stop), name="tagger-reconciler"),
            asyncio.create_task(
                ConsentWriteback(settings, pool, clients, health.consent, clock).run(stop),
                name="tagger-consent-writeback",
            ),
        ]
        scheduler = journey_scheduler(settings, pool, health.journeys, clock, email_metrics)
        if scheduler is not None:
            tasks.append(asyncio.create_task(scheduler.run(stop), name="tagger-journeys"))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            error = task.exception()
            if error is not None:
                health.consumer.stopped(f"failed: {error!r}")
                raise error
    finally:
        health.consumer.stopped("stopped")
        health.reconciler.stopped("stopped")
        health.journeys.stopped("stopped")
        health.consent.stopped("stopped")
        await _close(consumer.stop(), "consumer")
        await _close(clients.close(), "Shopify clients")
        await _close(pool.close(), "database pool")
        logger.info("tagger stopped")
