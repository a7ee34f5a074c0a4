"""A FastAPI app that hands a few exact paths to plain ASGI endpoints, ahead of its own stack.

The endpoints skip FastAPI's middleware, routing and dependency machinery; everything else
(lifespan, the other routes, /docs, /openapi.json) is FastAPI's. Such an endpoint answers its
own errors (the JSON error body) and every method on its path. OpenAPI cannot see it, so each
one is registered with the path item that documents it, and that is merged into the schema.
"""

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


class FastPathApp(FastAPI):
    """FastAPI, plus `add_fast_path(path, endpoint, openapi_path_item)`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fast_paths: dict[str, ASGIApp] = {}
        self._fast_docs: dict[str, dict[str, Any]] = {}

    def add_fast_path(
        self, path: str, endpoint: ASGIApp, openapi_path_item: dict[str, Any]
    ) -> None:
        """Serve HTTP requests for exactly `path` with `endpoint`; document it in OpenAPI."""
        self._fast_paths[path] = endpoint
        self._fast_docs[path] = openapi_path_item
        self.openapi_schema = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._fast_paths.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            schema.setdefault("paths", {}).update(self._fast_docs)
            self.openapi_schema = schema
        return self.openapi_schema
