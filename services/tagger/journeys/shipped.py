"""The three journeys every shop starts with, kept as JSON data files (data/*.json) in the
same shape the API accepts: welcome, vip-care and win-back.

Their triggers are the segmenter's built-in templates: new-customer, vip and churn-risk.
Conversion windows: 7 days for welcome, 30 for win-back, and 14 for VIP care, whose exclusive
offer goes at entry and whose VIPs buy often, so a long window would mostly count orders they
were placing anyway (the birthday offer usually falls outside it: the report measures the entry
offer).
"""

from importlib import resources

from services.common.envelope import loads_json
from services.tagger.journeys.model import JourneyIn

SHIPPED_HANDLES = ("welcome", "vip-care", "win-back")


def shipped_journey(handle: str) -> JourneyIn:
    """One shipped journey, parsed with exact numbers and validated; a fresh object per call."""
    if handle not in SHIPPED_HANDLES:
        raise ValueError(f"no shipped journey {handle!r}")
    text = resources.files("services.tagger.journeys.data").joinpath(f"{handle}.json").read_text()
    return JourneyIn.model_validate(loads_json(text))


def shipped_journeys() -> list[JourneyIn]:
    """All shipped journeys, in SHIPPED_HANDLES order."""
    return [shipped_journey(handle) for handle in SHIPPED_HANDLES]
