"""The journeys' fixture (support.py holds it and its helpers)."""

from tests.integration.tagger.journeys.support import journeys

__all__ = ["journeys"]
