"""A customer's state as the reducer keeps it: last-writer-wins attributes, orders, checkouts."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

# Engagement counters, one per custom event type (also columns of `customers`).
COUNTERS = {
    "custom/page_viewed": "page_views",
    "custom/product_viewed": "product_views",
    "custom/added_to_cart": "added_to_cart",
    "custom/email_opened": "emails_opened",
    "custom/email_clicked": "emails_clicked",
    "custom/review_written": "reviews_written",
    "custom/referral": "referrals",
}


# ISO 4217 currencies whose minor unit is not the cent; every other has two decimals.
_DECIMALS = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    "CLF": 4,
    "UYW": 4,
}


def currency_exponent(currency: str | None) -> int:
    """The exponent of a currency's minor unit: -2 for cents, 0 for yen, -3 for dinar fils."""
    return -_DECIMALS.get((currency or "").upper(), 2)


def _frozen(mapping: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


# The stamp of a value whose time is unknown (an imported CSV row): any value with a real time
# wins over it, and among such values the one applied last wins.
UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Stamp:
    """A value with the time it was true as of; a newer stamp wins, so order does not matter."""

    value: Any
    at: datetime


@dataclass(frozen=True)
class LineFact:
    product_id: int | None
    vendor: str | None
    quantity: int


@dataclass(frozen=True)
class RefundFact:
    """One refund. `amount` is exact shop money when the payload says it; otherwise the money
    is `presentment` (what the transactions moved, in the customer's currency), converted at
    the order's rate, or failing that at the rate of the refund's own lines (`line_rate`).

    `final` is False while a transaction is still pending: a later version replaces it.
    """

    amount: Decimal | None
    at: datetime | None
    presentment: Decimal | None = None
    line_rate: Decimal | None = None
    final: bool = True

    def in_shop_money(self, order_rate: Decimal | None, exponent: int) -> Decimal:
        """The refund in shop money; `exponent` is the shop currency's (-2 for cents)."""
        if self.amount is not None:
            return self.amount
        presentment = self.presentment or Decimal(0)
        rate = order_rate if order_rate is not None else self.line_rate
        if rate is None:
            # Nothing says the currencies differ: a single-currency order.
            return presentment
        return (presentment * rate).quantize(Decimal(1).scaleb(exponent))


@dataclass(frozen=True)
class OrderFact:
    """One order as far as it is known; `seen` is False while only its refunds have arrived."""

    order_id: int
    customer_id: int | None = None
    seen: bool = False
    placed_at: datetime | None = None
    total: Decimal | None = None
    cancelled: bool = False
    test: bool = False
    updated_at: datetime | None = None
    checkout_token: str | None = None
    lines: tuple[LineFact, ...] = ()
    refunds: Mapping[int, RefundFact] = field(default_factory=_frozen)
    # Shop money per unit of the customer's (presentment) currency; None when they are one.
    rate: Decimal | None = None
    # The shop's currency (ISO 4217), which says how converted amounts are rounded.
    currency: str | None = None

    @property
    def counts(self) -> bool:
        """Whether this order counts towards orders and spend."""
        return self.seen and not self.cancelled and not self.test

    @property
    def real(self) -> bool:
        """Seen and not a test order: its cancellation and refunds are the customer's."""
        return self.seen and not self.test

    @property
    def refunded(self) -> Decimal:
        """The order's refunds in shop money."""
        return sum(
            (r.in_shop_money(self.rate, self._exponent) for r in self.refunds.values()), Decimal(0)
        )

    def refunded_by(self, moment: datetime) -> Decimal:
        """The refunds processed at or before `moment` (or at an unknown time), in shop money."""
        return sum(
            (
                r.in_shop_money(self.rate, self._exponent)
                for r in self.refunds.values()
                if r.at is None or r.at <= moment
            ),
            Decimal(0),
        )

    @property
    def _exponent(self) -> int:
        return currency_exponent(self.currency)

    @property
    def net_total(self) -> Decimal:
        """What the customer paid and kept: total less refunds, never below zero."""
        return max(Decimal(0), (self.total or Decimal(0)) - self.refunded)

    @property
    def product_ids(self) -> list[int]:
        return sorted({line.product_id for line in self.lines if line.product_id is not None})


@dataclass(frozen=True)
class CheckoutFact:
    token: str
    started_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass(frozen=True)
class ProductFact:
    product_id: int
    product_type: str | None = None
    vendor: str | None = None
    title: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class CustomerState:
    """Everything the reducer keeps about one customer of one shop."""

    shop_id: int
    customer_id: int
    # Attributes by name (email, registered_at, country_code, email_consent, birthday, …).
    profile: Mapping[str, Stamp] = field(default_factory=_frozen)
    # Tag → Stamp(present: bool); tags set outside segflow, from any source.
    tags: Mapping[str, Stamp] = field(default_factory=_frozen)
    checkouts: Mapping[str, CheckoutFact] = field(default_factory=_frozen)
    counters: Mapping[str, int] = field(default_factory=_frozen)
    last_engaged_at: datetime | None = None
    deleted: bool = False
    orders: Mapping[int, OrderFact] = field(default_factory=_frozen)
    # Tags (by `tag_key`) the tagger put on the customer: Shopify's webhooks echo them back,
    # but they are segflow's, not the merchant's, so rules never see them.
    managed_tags: frozenset[str] = frozenset()

    def attribute(self, name: str) -> Any:
        """The current value of a profile attribute, or None if unknown."""
        stamp = self.profile.get(name)
        return None if stamp is None else stamp.value
