"""Review of the incremental aggregates (branch `aggregates`): the cost of building them."""

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.segmenter.domain import aggregates
from services.segmenter.domain.aggregates import Basis, Contribution, build
from tests.unit.segmenter.events import NOW


def test_building_the_aggregates_of_n_orders_is_linear_in_n(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Finding: `build` adds the orders one by one through `_replaced`, which copies the
    whole `recent` map (and freezes it again) for every order, so building from n orders in
    the last year copies about n²/2 entries: 2,000 orders take 0.26 s, 5,000 1.6 s, 20,000
    30 s of CPU (the previous design's derive_facts was linear). Every rebuild goes through
    it: migration 0004's backfill, an extreme order leaving, the product fan-out, and every
    delivery that carries Shopify's totals. Counted here without timing: entries copied into
    frozen maps while building must stay within a constant times n."""
    copied = 0
    real = aggregates._frozen

    def counting(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
        nonlocal copied
        copied += len(mapping or {})
        return real(mapping)

    monkeypatch.setattr(aggregates, "_frozen", counting)
    n = 2000
    parts = {
        i: Contribution(
            counts=True, real=True, placed_at=NOW - timedelta(minutes=i), net=Decimal(10)
        )
        for i in range(1, n + 1)
    }
    built = build(parts, Basis(), NOW)
    assert built.counted == n and len(built.recent) == n
    assert copied <= 10 * n, f"{copied} entries copied to build {n} orders"
