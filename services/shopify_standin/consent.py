"""The checks Shopify makes on customerEmailMarketingConsentUpdate, as pure functions."""

from datetime import UTC, datetime
from typing import Any

_LEVEL = ["input", "emailMarketingConsent", "marketingOptInLevel"]
_UPDATED_AT = ["input", "emailMarketingConsent", "consentUpdatedAt"]


def parse_datetime(value: object) -> datetime | None:
    """A DateTime input (ISO 8601; no offset means UTC), or None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def consent_problems(
    email: str | None, consent: dict[str, Any], now: datetime
) -> list[dict[str, Any]]:
    """The userErrors for `consent` (CustomerEmailMarketingConsentInput) on a customer with
    `email`; empty when the update may go ahead."""
    state = consent["marketingState"]
    level = consent.get("marketingOptInLevel")
    errors = []
    if not email:
        # Shopify needs an email address to hold email consent; the wording is the stand-in's.
        message = "Customer must have an email address to set email marketing consent"
        errors.append({"field": ["input", "customerId"], "message": message, "code": "INVALID"})
    if state in ("SUBSCRIBED", "PENDING") and not level:
        message = "Marketing opt in level must exist"
        errors.append({"field": _LEVEL, "message": message, "code": "MISSING_ARGUMENT"})
    elif state == "PENDING" and level != "CONFIRMED_OPT_IN":
        message = "Marketing opt in level must be confirmed opt-in for pending consent state"
        errors.append({"field": _LEVEL, "message": message, "code": "INVALID"})
    if state in ("REDACTED", "INVALID"):
        message = f"Marketing state {state} cannot be set by an app"
        errors.append(
            {
                "field": ["input", "emailMarketingConsent", "marketingState"],
                "message": message,
                "code": "INCLUSION",
            }
        )
    given = consent.get("consentUpdatedAt")
    moment = parse_datetime(given)
    if given is not None and moment is None:
        message = "Consent updated at is invalid"
        errors.append({"field": _UPDATED_AT, "message": message, "code": "INVALID"})
    elif moment is not None and moment > now:
        message = "Consent updated at must not be in the future"
        errors.append({"field": _UPDATED_AT, "message": message, "code": "INVALID"})
    return errors
