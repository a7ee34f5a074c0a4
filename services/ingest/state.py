"""What every ingest endpoint shares once the lifespan has started, and the 503 on publish."""

import logging
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer

from services.common.envelope import EnvelopeMeta
from services.common.errors import ApiError
from services.common.settings import Settings
from services.common.shops import ShopDirectory
from services.ingest.metrics import IngestMetrics
from services.ingest.publisher import BrokerUnavailableError, EventPublisher

logger = logging.getLogger(__name__)


@dataclass
class IngestState:
    settings: Settings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    shops: ShopDirectory
    publisher: EventPublisher
    metrics: IngestMetrics

    async def publish(self, events: list[tuple[EnvelopeMeta, bytes]]) -> None:
        """Produce and wait for the acknowledgement; 503 with Retry-After when there is none."""
        try:
            await self.publisher.publish(events)
        except BrokerUnavailableError as exc:
            logger.warning("broker did not acknowledge: %s", exc)
            raise ApiError(
                503,
                "broker_unavailable",
                "the event broker did not acknowledge; retry later",
                headers={"Retry-After": str(self.settings.retry_after_seconds)},
            ) from exc
