"""Pydantic validation errors as one line of text, for dead letters and import reports (no HTTP)."""

from pydantic import ValidationError


def first_validation_error(exc: ValidationError) -> str:
    """The first problem of a pydantic ValidationError as "field.path: message"."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error.get("loc", ())) or "payload"
    return f"{location}: {error['msg']}"
