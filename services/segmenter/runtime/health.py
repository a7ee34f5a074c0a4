"""What the segmenter's /readyz says about its consumer and scheduler, written as they run,
and the small HTTP app each segmenter process serves it on (/healthz, /readyz, /metrics).

The consumer and the outbox publisher decide readiness: ready only while the consumer runs
and neither waits out a failing dependency. The scheduler is reported too (its failures are
retried the same way), but a scheduler retrying alone does not make the process unready.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from services.common.metrics import mount_metrics
from services.segmenter.runtime.faults import Fault

State = Literal["starting", "running", "retrying", "stopped"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ComponentHealth:
    """One long-running task's state: starting → running ⇄ retrying → stopped."""

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
        self._clock = clock
        self.state: State = "starting"
        self.since = clock()
        self.fault: Fault | None = None
        self.attempts = 0
        self.stopped_because: str | None = None

    def _enter(self, state: State) -> None:
        if state != self.state:
            self.state = state
            self.since = self._clock()

    def running(self) -> None:
        """Working normally (again)."""
        self._enter("running")
        self.fault = None
        self.attempts = 0

    def retrying(self, fault: Fault, attempts: int) -> None:
        """Waiting to retry after `attempts` failures in a row, the last one `fault`."""
        self._enter("retrying")
        self.fault = fault
        self.attempts = attempts

    def stopped(self, because: str) -> None:
        """Not running any more (shut down, or failed for good)."""
        self._enter("stopped")
        self.stopped_because = because

    @property
    def ok(self) -> bool:
        return self.state == "running"

    def report(self) -> dict[str, Any]:
        """The state as JSON."""
        body: dict[str, Any] = {"state": self.state, "since": self.since.isoformat()}
        if self.fault is not None and self.state == "retrying":
            body.update(self.fault.describe(), attempts=self.attempts)
        if self.stopped_because is not None and self.state == "stopped":
            body["because"] = self.stopped_because
        return body


class ConsumerHealth(ComponentHealth):
    """The consumer's state, with its partitions and whether a rebalance is under way."""

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
        super().__init__(clock)
        self.partitions: list[int] = []
        self.rebalancing = False

    def report(self) -> dict[str, Any]:
        body = super().report()
        body.update(partitions=self.partitions, rebalancing=self.rebalancing)
        return body


class SegmenterHealth:
    """Shared by the worker, the scheduler and the health endpoint of one segmenter process."""

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
        self.consumer = ConsumerHealth(clock)
        self.scheduler = ComponentHealth(clock)
        # The outbox publisher beside the consumer: changes that cannot be published are as
        # stuck as events that cannot be applied.
        self.publisher = ComponentHealth(clock)

    @property
    def ready(self) -> bool:
        return self.consumer.ok and self.publisher.state != "retrying"

    def report(self) -> dict[str, Any]:
        """Every component, as /readyz shows them."""
        return {
            "consumer": self.consumer.report(),
            "scheduler": self.scheduler.report(),
            "publisher": self.publisher.report(),
        }


def create_health_app(health: SegmenterHealth, registry: CollectorRegistry) -> FastAPI:
    """The segmenter process's own endpoint: liveness, the consumer's readiness, its metrics."""
    app = FastAPI(title="segflow segmenter health", version="0.1.0", openapi_url=None)
    mount_metrics(app, registry)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = health.ready
        body = {
            "status": "ready" if ready else "not_ready",
            "checks": {
                "consumer": health.consumer.ok,
                "publisher": health.publisher.state != "retrying",
            },
            **health.report(),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return app
