"""Prometheus helpers: one registry per service instance, served on /metrics."""

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def new_registry() -> CollectorRegistry:
    """A fresh registry, so two app instances (tests, replicas in one process) never collide."""
    return CollectorRegistry(auto_describe=True)


def mount_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
    """Serve the registry in Prometheus text format at GET /metrics."""

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
