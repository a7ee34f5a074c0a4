"""The journeys' fixture (support.py holds it and its helpers)."""

from tests.integration.tagger.journeys.support import journeys, tagger_url

__all__ = ["journeys", "tagger_url"]
