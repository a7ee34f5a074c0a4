"""The stand-in's HTTP app: Admin GraphQL at /admin/api/{version}/graphql.json (authenticated by
X-Shopify-Access-Token), the staged-upload target, bulk result files, and /_standin/."""

import asyncio
import hmac
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from starlette.datastructures import UploadFile

from services.common.errors import install_error_handlers
from services.shopify_standin import control, errors
from services.shopify_standin.context import RequestContext, Runtime
from services.shopify_standin.engine import Answer, handle_graphql, log_request
from services.shopify_standin.state import Fault, Shop, StandinState
from services.shopify_standin.webhooks import DeliveryPolicy, WebhookDispatcher

_VERSION = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
# Shopify's limit on a staged bulk-variables file.
MAX_UPLOAD_BYTES = 100 * 1024 * 1024


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _xml(status: int, body: str) -> Response:
    return Response(
        f"<?xml version='1.0' encoding='UTF-8'?>{body}", status, media_type="application/xml"
    )


def _xml_error(code: str, message: str) -> Response:
    return _xml(400, f"<Error><Code>{code}</Code><Message>{message}</Message></Error>")


def _fault_answer(shop: Shop, fault: Fault) -> Answer:
    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.status == 429 else None
    body = errors.STATUS_BODIES.get(fault.status, {"errors": f"HTTP {fault.status}"})
    level = shop.bucket.level(time.monotonic())
    entry = {"operation": None, "outcome": f"fault_{fault.status}", "before": level, "after": level}
    log_request(shop, entry)
    return Answer(fault.status, body, headers)


def create_app(policy: DeliveryPolicy | None = None) -> FastAPI:
    """A stand-in with no shops; create them over /_standin/shops."""
    state = StandinState()
    runtime = Runtime(state, WebhookDispatcher(state, policy or DeliveryPolicy()))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.dispatcher.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="segflow Shopify stand-in", lifespan=lifespan, docs_url="/_standin/docs")
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(control.router)

    @app.post("/admin/api/{version}/graphql.json", include_in_schema=False)
    async def graphql(version: str, request: Request) -> Response:
        if not _VERSION.match(version):
            return _json(404, {"errors": "Not Found"})
        token = request.headers.get("x-shopify-access-token", "")
        shop = runtime.state.by_token.get(token) if token else None
        if shop is None or not hmac.compare_digest(shop.access_token, token):
            return _json(401, errors.UNAUTHORIZED)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _json(400, errors.MISSING_QUERY)
        slow = shop.take_fault(("slow",))
        if slow is not None:
            await asyncio.sleep(slow.delay_ms / 1000)
        fault = shop.take_fault(("status", "throttle_429"))
        if fault is not None and not fault.after_execute:
            answer = _fault_answer(shop, fault)
            return _json(answer.status, answer.body, answer.headers)
        base_url = str(request.base_url).rstrip("/")
        answer = handle_graphql(RequestContext(runtime, shop, base_url, version), body)
        if fault is not None:
            answer = _fault_answer(shop, fault)
        return _json(answer.status, answer.body, answer.headers)

    @app.post("/staged-uploads", include_in_schema=False)
    async def staged_upload(request: Request) -> Response:
        async with request.form(max_files=1, max_part_size=MAX_UPLOAD_BYTES) as form:
            key = form.get("key")
            signature = form.get("signature")
            upload = form.get("file")
            target = runtime.state.uploads.get(key) if isinstance(key, str) else None
            if target is None or not isinstance(signature, str):
                return _xml_error("InvalidArgument", "No such upload target (key)")
            if not hmac.compare_digest(target.signature, signature):
                return _xml_error("AccessDenied", "The signature does not match the key")
            if not isinstance(upload, UploadFile):
                return _xml_error("InvalidArgument", "The form has no file part")
            target.body = await upload.read()
        location = f"{str(request.base_url).rstrip('/')}/staged-uploads/{target.key}"
        return _xml(
            201,
            f"<PostResponse><Location>{location}</Location><Key>{target.key}</Key></PostResponse>",
        )

    @app.get("/bulk-operation-outputs/{name}.jsonl", include_in_schema=False)
    async def bulk_output(name: str) -> Response:
        result = runtime.state.results.get(name)
        if result is None:
            return _xml(404, "<Error><Code>NoSuchKey</Code></Error>")
        return Response(result, media_type="application/jsonl")

    return app
