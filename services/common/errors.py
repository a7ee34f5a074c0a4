"""JSON errors for every HTTP API: `{"error": {"code", "message", "field"}}`."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An error answered to the client as JSON; `code` is stable, `message` is for people."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        outcome: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
        # The metric label; finer than `code` where the client must not learn the difference.
        self.outcome = outcome or code


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def field_path(loc: tuple[int | str, ...]) -> str:
    """`("body", "events", 3, "customer_id")` → `events[3].customer_id`."""
    path = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def bad_request(exc: ValidationError, code: str) -> ApiError:
    """A 400 naming the first invalid field of a request body, e.g. `events[3].customer_id`."""
    first = exc.errors()[0]
    field = field_path(tuple(first.get("loc", ())))
    return ApiError(400, code, f"{field}: {first['msg']}", field=field)


def error_counter(registry: CollectorRegistry) -> Counter:
    """`segflow_http_errors_total{code}`: requests answered with an error body, by its code
    (codes are this code base's own, so the label is bounded)."""
    return Counter(
        "segflow_http_errors",
        "Requests answered with an error body, by error code",
        ["code"],
        registry=registry,
    )


def install_error_handlers(
    app: FastAPI, bad_request_status: int = 400, errors: Counter | None = None
) -> None:
    """Answer ApiError, validation errors and HTTP errors with the JSON error body; count each
    by its code in `errors` when given."""

    def count(code: str) -> None:
        if errors is not None:
            errors.labels(code).inc()

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        count(exc.code)
        return JSONResponse(
            error_body(exc.code, exc.message, exc.field), exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = field_path(tuple(first.get("loc", ())))
        message = f"{field}: {first.get('msg', 'invalid')}"
        count("invalid_request")
        return JSONResponse(error_body("invalid_request", message, field), bad_request_status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 400: FastAPI's "error parsing the body" (not UTF-8, nested past the parser's stack).
        codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        count(code)
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)
