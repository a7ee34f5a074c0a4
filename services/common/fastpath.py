"""A FastAPI app that hands a few exact paths to plain ASGI endpoints, ahead of its own stack.

The endpoints skip FastAPI's middleware, routing and dependency machinery; everything else
(lifespan, the other routes, /docs, /openapi.json) is FastAPI's. Such an endpoint answers its
own errors (the JSON error body) and every method on its path. OpenAPI cannot see it, so each
one is registered with the path item that documents it, and that is merged into the schema.
"""

import re
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.datastructures import URL
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

_JSON = (b"content-type", b"application/json")


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    """Answer with a JSON body (strings, numbers and times only: no money goes through here)."""
    content = orjson.dumps(body)
    raw_headers = [_JSON, (b"content-length", str(len(content)).encode())]
    if headers:
        raw_headers += [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})


class FastPathApp(FastAPI):
    """FastAPI, plus `add_fast_path(path, endpoint, openapi_path_item)` for an exact path and
    `add_fast_pattern(pattern, template, endpoint, openapi_path_item)` for one with ids in it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fast_paths: dict[str, ASGIApp] = {}
        self._fast_patterns: list[tuple[re.Pattern[str], ASGIApp]] = []
        self._fast_docs: dict[str, dict[str, Any]] = {}

    def add_fast_path(
        self, path: str, endpoint: ASGIApp, openapi_path_item: dict[str, Any]
    ) -> None:
        """Serve HTTP requests for exactly `path` with `endpoint`; document it in OpenAPI."""
        self._fast_paths[path] = endpoint
        self._fast_docs[path] = openapi_path_item
        self.openapi_schema = None

    def add_fast_pattern(
        self,
        pattern: re.Pattern[str],
        template: str,
        endpoint: ASGIApp,
        openapi_path_item: dict[str, Any],
    ) -> None:
        """Serve HTTP requests whose whole path matches `pattern` with `endpoint` (it reads
        the groups itself); document it in OpenAPI under `template`."""
        self._fast_patterns.append((pattern, endpoint))
        self._fast_docs[template] = openapi_path_item
        self.openapi_schema = None

    def _endpoint(self, path: str) -> ASGIApp | None:
        endpoint = self._fast_paths.get(path)
        if endpoint is None:
            endpoint = next((e for p, e in self._fast_patterns if p.fullmatch(path)), None)
        return endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            endpoint = self._endpoint(path)
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
            if path != "/" and path.endswith("/") and self._endpoint(path.rstrip("/")):
                # As FastAPI's router does for its own routes (redirect_slashes).
                url = URL(scope=scope).replace(path=path.rstrip("/"))
                await RedirectResponse(url, status_code=307)(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            schema.setdefault("paths", {}).update(self._fast_docs)
            self.openapi_schema = schema
        return self.openapi_schema


def openapi_error(description: str) -> dict[str, Any]:
    """An OpenAPI response whose body is the JSON error body."""
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}


def body_schema(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a body an endpoint reads by hand (to bound and check the raw bytes, or to
    read it only after the key was checked)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    # "#/$defs/…" would point into the OpenAPI document's root: put each definition in place.
    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    content = {"application/json": {"schema": inline(schema), "example": example}}
    return {"requestBody": {"required": True, "content": content}}
