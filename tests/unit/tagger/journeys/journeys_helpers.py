"""Builders shared by the journey machine tests."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.segmenter.domain.facts import CustomerFacts
from services.tagger.journeys.enrolment import CustomerContext, SegmentChange
from services.tagger.journeys.holdout import Group, assign_group
from services.tagger.journeys.model import Journey, JourneyIn
from services.tagger.journeys.shipped import shipped_journey
from services.tagger.journeys.timing import SendCap

NEW_YORK = ZoneInfo("America/New_York")
# Monday 2025-03-03, 10:00 in New York (EST).
T0 = datetime(2025, 3, 3, 15, tzinfo=UTC)
JOURNEY_ID = 11
CAP = SendCap(2, timedelta(hours=24))


def shipped(which: str, /, version: int = 1, **changes: Any) -> Journey:
    """A shipped journey with fields of the JSON shape changed (holdout off unless given)."""
    data = {**shipped_journey(which).model_dump(by_alias=True), "holdout_share": Decimal(0)}
    edited = JourneyIn.model_validate({**data, **changes})
    return edited.to_journey(journey_id=JOURNEY_ID, shop_id=1, version=version)


def customer_in(group: Group, share: Decimal, journey_id: int = JOURNEY_ID) -> int:
    """The first customer id the draw puts in that group."""
    return next(c for c in itertools.count(1) if assign_group(journey_id, c, share) is group)


def facts(customer_id: int = 1, **values: Any) -> CustomerFacts:
    base: dict[str, Any] = {"email": "ada@example.com", "accepts_email_marketing": True}
    return CustomerFacts(shop_id=1, customer_id=customer_id, **{**base, **values})


def context(customer_id: int = 1, **values: Any) -> CustomerContext:
    fact_values = values.pop("facts", {})
    base: dict[str, Any] = {
        "facts": facts(customer_id, **fact_values),
        "email_consent": "subscribed",
        "in_trigger_segment": True,
        "zone": NEW_YORK,
        "recent_sends": (),
        "cap": CAP,
    }
    return CustomerContext(**{**base, **values})


def change(
    seq: int,
    kind: Literal["entered", "exited"] = "entered",
    at: datetime = T0,
    customer_id: int = 1,
    segment: str = "new-customer",
    cause: str = "event",
) -> SegmentChange:
    return SegmentChange(
        change_id=f"change-{seq}",
        seq=seq,
        customer_id=customer_id,
        segment_handle=segment,
        change=kind,
        cause=cause,
        changed_at=at,
    )
