"""The pure reducer: `apply(state, event) -> state`, one function per kind of event.

Deliveries may repeat and arrive out of order. Counts and sums are derived from facts keyed by
order / refund / checkout id, so applying twice changes nothing; attributes carry the time
they were true as of, and the newer one wins whatever the arrival order.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.common.shopify import (
    Checkout,
    Customer,
    CustomerTagsChanged,
    DeletedCustomer,
    EmailConsentUpdate,
    MoneyBag,
    Order,
    PurchasingSummary,
    Refund,
    ShopifyModel,
    SmsConsentUpdate,
)
from services.segmenter.domain.state import (
    COUNTERS,
    UNKNOWN_TIME,
    CheckoutFact,
    CustomerState,
    LineFact,
    OrderFact,
    RefundFact,
    Stamp,
)

_BIRTHDAY = re.compile(r"^(?:\d{4}-|--)?(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class Event:
    """A decoded event: the envelope's facts and the payload (a model, or a dict for custom)."""

    topic: str
    event_id: str
    occurred_at: datetime
    received_at: datetime
    customer_id: int | None
    payload: ShopifyModel | Mapping[str, Any] | None
    # When the aggregates in the payload (Shopify's order count and amount spent) were true:
    # an export's time for imports; None means `occurred_at` (a webhook's trigger time).
    as_of: datetime | None = None

    @property
    def totals_as_of(self) -> datetime:
        """The moment Shopify's own totals in this payload were true as of."""
        if self.as_of is not None:
            return self.as_of
        # A row without any time (the admin CSV export) is as of its import.
        return self.received_at if self.occurred_at <= UNKNOWN_TIME else self.occurred_at


def shop_amount(money_set: MoneyBag | None, fallback: Decimal | None) -> Decimal | None:
    """The shop-currency amount of a `*_set`, else the plain field (already shop money)."""
    if money_set is not None and money_set.shop_money is not None:
        if money_set.shop_money.amount is not None:
            return money_set.shop_money.amount
    return fallback


# Refund transaction statuses: money counted as given back, and those still to settle.
_GIVEN_BACK = (None, "success", "pending")
_UNSETTLED = ("pending",)


def _presentment_amount(money_set: MoneyBag | None) -> Decimal | None:
    if money_set is not None and money_set.presentment_money is not None:
        return money_set.presentment_money.amount
    return None


def _lines_in_shop_money(refund: Refund) -> Decimal:
    """The refund's lines with their tax, plus refunded shipping, in shop money."""
    total = Decimal(0)
    for line in refund.refund_line_items:
        total += shop_amount(line.subtotal_set, line.subtotal) or Decimal(0)
        total += shop_amount(line.total_tax_set, line.total_tax) or Decimal(0)
    for adjustment in refund.order_adjustments:
        # Adjustments are negative for money given back (kind "shipping_refund").
        if adjustment.kind == "shipping_refund":
            total -= shop_amount(adjustment.amount_set, adjustment.amount) or Decimal(0)
    return total


def _line_rate(refund: Refund) -> Decimal | None:
    """Shop money per presentment unit, as the refund's own lines state both; else None."""
    shop, presentment = Decimal(0), Decimal(0)
    for line in refund.refund_line_items:
        for money_set in (line.subtotal_set, line.total_tax_set):
            in_shop = shop_amount(money_set, None)
            in_presentment = _presentment_amount(money_set)
            if in_shop is None or in_presentment is None:
                return None
            shop += in_shop
            presentment += in_presentment
    if presentment == 0 or shop == presentment:
        return None
    return shop / presentment


def refund_fact(refund: Refund) -> RefundFact:
    """What one refund gave back, in shop money where the payload says it.

    With refund transactions, money is what they moved: successful and pending ones count,
    failed ones do not, whatever lines the refund lists. Transaction `amount` is in the
    customer's currency, so without `amount_set.shop_money` it is kept as presentment money
    and converted at the order's rate. Without any transaction, the refund is its lines.
    """
    at = refund.processed_at or refund.created_at
    money = [t for t in refund.transactions if t.kind == "refund"]
    if not money:
        return RefundFact(_lines_in_shop_money(refund), at)
    final = all(t.status not in _UNSETTLED for t in money)
    given = [t for t in money if t.status in _GIVEN_BACK]
    in_shop = [shop_amount(t.amount_set, None) for t in given]
    if all(amount is not None for amount in in_shop):
        return RefundFact(sum((a for a in in_shop if a is not None), Decimal(0)), at, final=final)
    presentment = sum((t.amount or Decimal(0) for t in given), Decimal(0))
    return RefundFact(None, at, presentment, _line_rate(refund), final)


def apply_refund(order: OrderFact | None, refund: Refund) -> OrderFact:
    """Record a refund on its order once, whether refunds/create or an order delivery brings it.

    A version whose transactions were still pending is replaced by a later one; a settled
    version is never replaced.
    """
    order = order or OrderFact(order_id=refund.order_id)
    known = order.refunds.get(refund.id)
    if known is not None and known.final:
        return order
    refunds = dict(order.refunds)
    refunds[refund.id] = refund_fact(refund)
    return replace(order, refunds=refunds)


def _rate(payload: Order) -> Decimal | None:
    """Shop money per presentment unit of the order, when the two currencies differ."""
    money_set = payload.total_price_set
    in_shop = shop_amount(money_set, None)
    in_presentment = _presentment_amount(money_set)
    if in_shop is None or in_presentment is None or in_presentment == 0:
        return None
    if in_shop == in_presentment:
        return None
    return in_shop / in_presentment


def _shop_currency(payload: Order) -> str | None:
    money_set = payload.total_price_set
    if money_set is not None and money_set.shop_money is not None:
        if money_set.shop_money.currency_code:
            return money_set.shop_money.currency_code
    return payload.currency


def is_newer(current: OrderFact, payload: Order) -> bool:
    """Whether an orders/* delivery is at least as new as what is known of the order."""
    return not current.seen or (
        payload.updated_at is not None
        and (current.updated_at is None or payload.updated_at >= current.updated_at)
    )


def apply_order(order: OrderFact | None, payload: Order) -> OrderFact:
    """Merge an orders/* delivery into what is known of the order."""
    current = order or OrderFact(order_id=payload.id)
    for refund in payload.refunds:
        current = apply_refund(current, refund)
    customer_id = payload.customer.id if payload.customer is not None else None
    # Cancellation is final in Shopify, so it sticks whichever delivery comes first.
    cancelled = current.cancelled or payload.cancelled_at is not None
    if not is_newer(current, payload):
        return replace(current, cancelled=cancelled)
    lines = tuple(
        LineFact(line.product_id, line.vendor, line.quantity or 0) for line in payload.line_items
    )
    return replace(
        current,
        customer_id=customer_id if customer_id is not None else current.customer_id,
        seen=True,
        placed_at=current.placed_at or payload.processed_at or payload.created_at,
        total=shop_amount(payload.total_price_set, payload.total_price),
        cancelled=cancelled,
        test=bool(payload.test),
        updated_at=payload.updated_at,
        checkout_token=payload.checkout_token or current.checkout_token,
        lines=lines or current.lines,
        rate=_rate(payload),
        currency=_shop_currency(payload),
    )


def _stamp(profile: dict[str, Stamp], name: str, value: Any, at: datetime) -> None:
    if value is None:
        return
    current = profile.get(name)
    if current is None or at >= current.at:
        profile[name] = Stamp(value, at)


def _consent(profile: dict[str, Stamp], name: str, state: str | None, at: datetime) -> None:
    _stamp(profile, name, state.lower() if state else None, at)


# Profile attribute: the time of the newest full list of tags seen. A tag it did not list is
# absent as of then, even if the tag is only heard of later, from an older source.
_TAGS_LISTED_AT = "tags_listed_at"


def _stamp_tag(
    profile: dict[str, Stamp], tags: dict[str, Stamp], tag: str, present: bool, at: datetime
) -> None:
    if tag not in tags:
        listed = profile.get(_TAGS_LISTED_AT)
        if listed is not None and listed.at > at:
            tags[tag] = Stamp(False, listed.at)
            return
    _stamp(tags, tag, present, at)


def _snapshot_tags(
    profile: dict[str, Stamp], tags: dict[str, Stamp], present: list[str], at: datetime
) -> None:
    """A full list of the customer's tags as of `at`: every other tag is absent then."""
    for tag in set(tags) | set(present):
        _stamp_tag(profile, tags, tag, tag in present, at)
    _stamp(profile, _TAGS_LISTED_AT, True, at)


def _summary(value: Any, as_of: datetime) -> dict[str, Any]:
    return {"value": value, "as_of": as_of.isoformat()}


def apply_customer(
    state: CustomerState, customer: Customer, at: datetime, as_of: datetime
) -> CustomerState:
    """A customer payload (customers/* or the customer inside an order or checkout).

    Its `updated_at` (else `at`) ranks its values against others. `as_of` is when Shopify's
    own totals in it were true, so they cover the orders placed until then: the payload's
    trigger time, not `updated_at` (a profile edit; the totals move without it).
    """
    at = customer.updated_at or at
    profile = dict(state.profile)
    if customer.created_at is not None:
        _stamp(profile, "registered_at", customer.created_at.isoformat(), at)
    _stamp(profile, "email", customer.email, at)
    # Names are kept for greetings only (no rule reads them); an absent name is unknown.
    _stamp(profile, "first_name", customer.first_name, at)
    _stamp(profile, "last_name", customer.last_name, at)
    _stamp(profile, "account_state", customer.state, at)
    address = customer.default_address
    if address is not None:
        _stamp(profile, "country_code", address.country_code, at)
        _stamp(profile, "province_code", address.province_code, at)
        _stamp(profile, "city", address.city, at)
    email = customer.email_marketing_consent
    if email is not None:
        _consent(profile, "email_consent", email.state, email.consent_updated_at or at)
    elif customer.accepts_marketing is not None:
        state_name = "subscribed" if customer.accepts_marketing else "not_subscribed"
        _consent(profile, "email_consent", state_name, customer.accepts_marketing_updated_at or at)
    sms = customer.sms_marketing_consent
    if sms is not None:
        _consent(profile, "sms_consent", sms.state, sms.consent_updated_at or at)
    # Versions before 2024-10 (and imports) carry Shopify's own aggregates on the customer.
    if customer.orders_count is not None:
        _stamp(profile, "summary_orders_count", _summary(customer.orders_count, as_of), at)
    if customer.total_spent is not None:
        _stamp(profile, "summary_amount_spent", _summary(str(customer.total_spent), as_of), at)
    if customer.last_order_at is not None:
        _stamp(profile, "summary_last_order_at", customer.last_order_at.isoformat(), at)
    tags = dict(state.tags)
    if customer.tags is not None:
        _snapshot_tags(profile, tags, list(customer.tags), at)
    return replace(state, profile=profile, tags=tags)


def apply_order_customer(state: CustomerState, event: Event) -> CustomerState:
    """The customer embedded in an order, applied to that customer only (an order may name
    another customer than the one holding it)."""
    payload = event.payload
    if not isinstance(payload, Order):
        return state
    customer = payload.customer
    if customer is None or customer.id != state.customer_id:
        return state
    return apply_customer(state, customer, event.occurred_at, event.totals_as_of)


def apply_checkout(state: CustomerState, checkout: Checkout, event: Event) -> CustomerState:
    """checkouts/create|update, keyed by token (from 2026-04 checkouts have no id)."""
    at = event.occurred_at
    token = checkout.token or (str(checkout.id) if checkout.id is not None else None)
    if token is None:
        return state
    current = state.checkouts.get(token) or CheckoutFact(token)
    updated_at = checkout.updated_at or checkout.created_at or at
    started = [t for t in (current.started_at, checkout.created_at) if t is not None]
    merged = replace(
        current,
        started_at=min(started) if started else None,
        updated_at=max(updated_at, current.updated_at) if current.updated_at else updated_at,
        completed_at=current.completed_at or checkout.completed_at,
    )
    checkouts = dict(state.checkouts)
    checkouts[token] = merged
    if checkout.customer is not None:
        state = apply_customer(state, checkout.customer, at, event.totals_as_of)
    return replace(state, checkouts=checkouts)


def parse_birthday(value: Any) -> str | None:
    """A birthday as "MM-DD" from "YYYY-MM-DD", "--MM-DD" or "MM-DD"; None if not one."""
    if not isinstance(value, str):
        return None
    match = _BIRTHDAY.match(value.strip())
    if match is None:
        return None
    month, day = int(match.group(1)), int(match.group(2))
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{month:02d}-{day:02d}"


def apply_custom(state: CustomerState, event: Event) -> CustomerState:
    """Behavioural events: counters, last engagement, and attributes from profile_updated."""
    payload = event.payload if isinstance(event.payload, Mapping) else {}
    if event.topic == "custom/profile_updated":
        properties = payload.get("properties")
        birthday = parse_birthday(
            properties.get("birthday") if isinstance(properties, Mapping) else None
        )
        if birthday is None:
            return state
        profile = dict(state.profile)
        _stamp(profile, "birthday", birthday, event.occurred_at)
        return replace(state, profile=profile)
    counter = COUNTERS.get(event.topic)
    if counter is None:
        return state
    counters = dict(state.counters)
    counters[counter] = counters.get(counter, 0) + 1
    last = state.last_engaged_at
    return replace(
        state,
        counters=counters,
        last_engaged_at=event.occurred_at if last is None else max(last, event.occurred_at),
    )


_CUSTOMER_PAYLOADS = (
    Order,
    Refund,
    Customer,
    DeletedCustomer,
    Checkout,
    CustomerTagsChanged,
    EmailConsentUpdate,
    SmsConsentUpdate,
    PurchasingSummary,
)


def changes_customer(event: Event) -> bool:
    """Whether `apply` can change a customer's state for this event (others are only recorded)."""
    if isinstance(event.payload, _CUSTOMER_PAYLOADS):
        return True
    return event.topic in COUNTERS or event.topic == "custom/profile_updated"


def apply(state: CustomerState, event: Event) -> CustomerState:
    """The state after one event; topics that say nothing about the customer leave it as is."""
    payload = event.payload
    at = event.occurred_at
    if isinstance(payload, Order):
        orders = dict(state.orders)
        orders[payload.id] = apply_order(orders.get(payload.id), payload)
        state = replace(state, orders=orders)
        return apply_order_customer(state, event)
    if isinstance(payload, Refund):
        orders = dict(state.orders)
        orders[payload.order_id] = apply_refund(orders.get(payload.order_id), payload)
        return replace(state, orders=orders)
    if isinstance(payload, DeletedCustomer):
        return replace(state, deleted=True)
    if isinstance(payload, Customer):
        return apply_customer(state, payload, at, event.totals_as_of)
    if isinstance(payload, Checkout):
        return apply_checkout(state, payload, event)
    if isinstance(payload, CustomerTagsChanged):
        present = event.topic == "customer.tags_added"
        tags = dict(state.tags)
        profile = dict(state.profile)
        for tag in payload.tags or []:
            _stamp_tag(profile, tags, tag, present, payload.occurred_at or at)
        return replace(state, tags=tags)
    if isinstance(payload, EmailConsentUpdate):
        profile = dict(state.profile)
        consent = payload.email_marketing_consent
        if consent is not None:
            _consent(profile, "email_consent", consent.state, consent.consent_updated_at or at)
        _stamp(profile, "email", payload.email_address, at)
        return replace(state, profile=profile)
    if isinstance(payload, SmsConsentUpdate):
        profile = dict(state.profile)
        consent = payload.sms_marketing_consent
        if consent is not None:
            _consent(profile, "sms_consent", consent.state, consent.consent_updated_at or at)
        return replace(state, profile=profile)
    if isinstance(payload, PurchasingSummary):
        profile = dict(state.profile)
        summary_at = payload.occurred_at or at
        if payload.number_of_orders is not None:
            count = _summary(payload.number_of_orders, summary_at)
            _stamp(profile, "summary_orders_count", count, summary_at)
        if payload.amount_spent is not None and payload.amount_spent.amount is not None:
            spent = _summary(str(payload.amount_spent.amount), summary_at)
            _stamp(profile, "summary_amount_spent", spent, summary_at)
        return replace(state, profile=profile)
    if event.topic.startswith("custom/"):
        return apply_custom(state, event)
    return state


Key = tuple[int, int]


def apply_to_owner(
    states: dict[Key, CustomerState], shop_id: int, order: OrderFact, event: Event
) -> OrderFact:
    """Apply an order or refund event to the order and to the customer who owns it now.

    Ownership follows the newest order payload, like every other attribute: an older
    delivery naming another customer does not move the order back. `states` (by shop and
    customer) is updated in place: the order moves from a previous owner to a new one, and
    the customer an order payload carries gets that payload's customer attributes whoever
    holds the order.
    """
    payload = event.payload
    owner = order.customer_id
    # A payload naming a customer also gives an order nobody holds yet to that customer,
    # whichever version came first (a newer guest delivery does not detach it either).
    if (
        isinstance(payload, Order)
        and payload.customer is not None
        and (is_newer(order, payload) or order.customer_id is None)
    ):
        owner = payload.customer.id
    if order.customer_id is not None and order.customer_id != owner:
        previous = states[(shop_id, order.customer_id)]
        kept = {i: o for i, o in previous.orders.items() if i != order.order_id}
        states[(shop_id, order.customer_id)] = replace(previous, orders=kept)
    if isinstance(payload, Order):
        updated = apply_order(order, payload)
    elif isinstance(payload, Refund):
        updated = apply_refund(order, payload)
    else:
        updated = order
    updated = replace(updated, customer_id=owner)
    if owner is not None:
        key = (shop_id, owner)
        states[key] = replace(states[key], orders={**states[key].orders, order.order_id: updated})
    if isinstance(payload, Order) and payload.customer is not None:
        key = (shop_id, payload.customer.id)
        states[key] = apply_order_customer(states[key], event)
    return updated
