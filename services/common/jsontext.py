"""JSON text with exact numbers: a Decimal is written as a JSON number with its own digits."""

import json
from datetime import date, datetime
from decimal import Decimal


def encode_json(value: object) -> bytes:
    """Compact UTF-8 JSON; Decimal → number, datetime/date → ISO 8601 string, float refused."""
    return _encode(value).encode()


def _encode(value: object) -> str:
    # json.dumps cannot write a Decimal as a number without float, so containers are walked here.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("JSON has no representation for non-finite numbers")
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime | date):
        return json.dumps(value.isoformat())
    if isinstance(value, dict):
        return "{" + ",".join(f"{_encode(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON (money is never float)")
