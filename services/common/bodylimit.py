"""A cap on request bodies for a whole ASGI app: 413 `payload_too_large` before reading it all.

A declared Content-Length over the cap is refused before the app runs. A chunked body (no
length, or one that lies) is counted as it arrives: past the cap the app's next read raises,
and whatever the app then answers (a handler's 500 or FastAPI's 400 for a body it could not
parse) is replaced by the 413, so the refusal is the same wherever the app reads.
"""

from collections.abc import Callable

import orjson
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import error_body

# Told about each refusal (a metric).
OnRefusal = Callable[[], None]


class BodyTooLargeError(Exception):
    """The body went past the cap while the app was reading it."""


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # ASCII digits only: isdigit() alone accepts "²", which int() refuses.
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


class BodyLimitMiddleware:
    """Wraps an ASGI app; bodies over `limit` bytes get 413 and never reach it whole."""

    def __init__(self, app: ASGIApp, limit: int, on_refusal: OnRefusal | None = None) -> None:
        self.app = app
        self.limit = limit
        self.on_refusal = on_refusal

    async def _refuse(self, send: Send) -> None:
        if self.on_refusal is not None:
            self.on_refusal()
        body = orjson.dumps(
            error_body(
                "payload_too_large", f"request body exceeds {self.limit} bytes", field="body"
            )
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # The rest of the body is never read: the connection cannot carry another request.
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(send)
            return
        received = 0
        exceeded = False
        started = False

        async def capped_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLargeError
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # The app's own answer to the failed read; the 413 goes instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except BodyTooLargeError:
            if started:
                raise
            await self._refuse(send)
        except Exception:
            if exceeded and not started:
                await self._refuse(send)
                return
            raise


def add_body_limit(app: FastAPI, limit: int, registry: CollectorRegistry, service: str) -> None:
    """Cap the app's request bodies at `limit` bytes (413 payload_too_large), counted."""
    refused = Counter(
        f"segflow_{service}_payload_too_large",
        "Requests refused with 413 because the body exceeds the limit",
        registry=registry,
    )
    app.add_middleware(BodyLimitMiddleware, limit=limit, on_refusal=refused.inc)
