"""Facts from state: what rules see of a customer at a moment, and when that changes by itself."""

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from services.common.shopify import tag_key
from services.segmenter.domain.aggregates import (
    Aggregates,
    basis_of,
    build,
    contribution,
)
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.state import CustomerState, ProductFact

DAY = timedelta(days=1)
WINDOWS = (30, 90, 365)
# A checkout still open this long after its last update counts as abandoned …
ABANDONED_AFTER = timedelta(hours=1)
# … for this long.
ABANDONED_FOR = timedelta(days=30)
CENT = Decimal("0.01")

# RFM scores from fixed thresholds (score 5 is best): recency in whole days since the last
# order, frequency in orders, monetary in shop currency spent.
RECENCY_DAYS = ((30, 5), (60, 4), (90, 3), (180, 2))
FREQUENCY_ORDERS = ((10, 5), (5, 4), (3, 3), (2, 2), (1, 1))
MONETARY_SPENT = ((Decimal(1000), 5), (Decimal(500), 4), (Decimal(200), 3), (Decimal(50), 2))


def whole_days(now: datetime, then: datetime) -> int:
    """Whole days from `then` to `now`, rounded down (negative if `then` is in the future)."""
    return (now - then) // DAY


def recency_score(days: int) -> int:
    for limit, score in RECENCY_DAYS:
        if days <= limit:
            return score
    return 1


def frequency_score(orders: int) -> int:
    for minimum, score in FREQUENCY_ORDERS:
        if orders >= minimum:
            return score
    return 1


def monetary_score(spent: Decimal) -> int:
    for minimum, score in MONETARY_SPENT:
        if spent >= minimum:
            return score
    return 1


def rfm_segment(recency: int, frequency: int, monetary: int) -> str:
    """A named RFM group from the three scores (a common simplification of the 11-group grid)."""
    if recency >= 4 and frequency >= 4:
        return "champions"
    if recency >= 3 and frequency >= 3:
        return "loyal"
    if recency >= 4 and frequency == 1:
        return "new"
    if recency >= 4:
        return "potential_loyalist"
    if recency == 3 and frequency == 1:
        return "promising"
    if recency == 3:
        return "needs_attention"
    if frequency >= 4 or monetary >= 4:
        return "cant_lose"
    if recency == 2:
        return "at_risk" if frequency >= 2 else "hibernating"
    return "lost"


def lifecycle_stage(orders_count: int, days_since_last_order: int | None) -> str:
    """potential → new → active → loyal, then at_risk and churned as the last order ages."""
    if orders_count == 0:
        return "potential"
    if days_since_last_order is not None and days_since_last_order > 180:
        return "churned"
    if days_since_last_order is not None and days_since_last_order > 90:
        return "at_risk"
    if orders_count >= 3:
        return "loyal"
    if orders_count == 1:
        return "new"
    return "active"


def _parse_time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _top(counts: Mapping[str, int]) -> str | None:
    if not counts:
        return None
    # Most orders first, then alphabetical, so ties resolve the same way everywhere.
    return min(counts, key=lambda key: (-counts[key], key))


def _earliest_after(now: datetime, moments: Iterable[datetime | None]) -> datetime | None:
    future = [moment for moment in moments if moment is not None and moment > now]
    return min(future) if future else None


def _summary(state: CustomerState, name: str) -> tuple[object, datetime] | None:
    """One of Shopify's own totals and the moment it was true as of."""
    stamp = state.profile.get(name)
    if stamp is None:
        return None
    if isinstance(stamp.value, dict):
        as_of = _parse_time(stamp.value.get("as_of"))
        return stamp.value.get("value"), as_of or stamp.at
    return stamp.value, stamp.at  # rows written before the moment was kept


def _totals(state: CustomerState, aggregates: Aggregates) -> tuple[int, Decimal]:
    """Orders count and net spend: Shopify's own totals are a floor for the orders placed
    before they were taken, and the orders placed after add to them."""
    orders_count = aggregates.counted
    count = _summary(state, "summary_orders_count")
    if count is not None and isinstance(count[0], int):
        before = aggregates.before
        orders_count = max(count[0], before) + (aggregates.counted - before)

    total_spent = aggregates.net
    spent = _summary(state, "summary_amount_spent")
    if spent is not None and isinstance(spent[0], str):
        # Every real order placed by then counts, cancelled ones too: a cancellation with a
        # refund after Shopify's figure was taken still comes off it. Shopify's figure already
        # left out the refunds made before it was taken; refunds made since still come off it.
        floor = max(Decimal(spent[0]), aggregates.known_then) - aggregates.since
        total_spent = max(Decimal(0), floor) + aggregates.later
    return orders_count, total_spent


def aggregate_orders(
    state: CustomerState, catalog: Mapping[int, ProductFact], now: datetime
) -> Aggregates:
    """The aggregates of every order in `state`, computed from scratch (the reference)."""
    basis = basis_of(state)
    return build(
        {i: contribution(order, basis, catalog) for i, order in state.orders.items()}, basis, now
    )


def derive_facts(
    state: CustomerState, catalog: Mapping[int, ProductFact], now: datetime
) -> tuple[CustomerFacts, datetime | None]:
    """The customer's facts as of `now` from all its orders, and the next moment one of them
    changes with time."""
    return facts_from(state, aggregate_orders(state, catalog, now), now)


def merchant_tags(state: CustomerState) -> tuple[str, ...]:
    """The customer's tags on Shopify, less those segflow's tagger manages."""
    managed = state.managed_tags
    present = (tag for tag, stamp in state.tags.items() if stamp.value)
    return tuple(sorted(tag for tag in present if not managed or tag_key(tag) not in managed))


def facts_from(
    state: CustomerState, aggregates: Aggregates, now: datetime
) -> tuple[CustomerFacts, datetime | None]:
    """The customer's facts as of `now` from its attributes and order aggregates (which must
    `cover` now), and the next moment one of them changes with time."""
    changes: list[datetime | None] = []
    orders_count, total_spent = _totals(state, aggregates)

    windows: dict[int, tuple[int, Decimal]] = {}
    for days in WINDOWS:
        start = now - days * DAY
        inside = [entry for entry in aggregates.recent.values() if entry[0] > start]
        windows[days] = (len(inside), sum((net for _, net in inside), Decimal(0)))
        changes.extend(placed_at + days * DAY for placed_at, _ in inside)

    type_counts = aggregates.types
    abandoned = []
    for checkout in state.checkouts.values():
        if checkout.completed_at is not None or checkout.token in aggregates.checkout_tokens:
            continue
        last = checkout.updated_at or checkout.started_at
        if last is None:
            continue
        if last + ABANDONED_AFTER <= now < last + ABANDONED_AFTER + ABANDONED_FOR:
            abandoned.append(last)
        changes.extend([last + ABANDONED_AFTER, last + ABANDONED_AFTER + ABANDONED_FOR])

    summary_last = _parse_time(state.attribute("summary_last_order_at"))
    last_order_at = max(
        [
            *([aggregates.last_at] if aggregates.last_at else []),
            *([summary_last] if summary_last else []),
        ],
        default=None,
    )
    days_since_last = whole_days(now, last_order_at) if last_order_at else None
    if last_order_at is not None:
        # Recency-based values step at these day counts; the day after each one they change.
        for limit in (30, 60, 90, 180):
            changes.append(last_order_at + (limit + 1) * DAY)

    rfm: tuple[int, int, int] | None = None
    if orders_count > 0 and days_since_last is not None:
        rfm = (
            recency_score(days_since_last),
            frequency_score(orders_count),
            monetary_score(total_spent),
        )

    email_consent = state.attribute("email_consent")
    birthday = state.attribute("birthday")
    registered = _parse_time(state.attribute("registered_at"))
    facts = CustomerFacts(
        shop_id=state.shop_id,
        customer_id=state.customer_id,
        registered_at=registered,
        email=state.attribute("email"),
        accepts_email_marketing=email_consent == "subscribed",
        accepts_sms_marketing=state.attribute("sms_consent") == "subscribed",
        country_code=state.attribute("country_code"),
        province_code=state.attribute("province_code"),
        city=state.attribute("city"),
        birthday_month=int(birthday[:2]) if isinstance(birthday, str) else None,
        tags=merchant_tags(state),
        account_state=state.attribute("account_state"),
        orders_count=orders_count,
        total_spent=total_spent,
        average_order_value=(total_spent / orders_count).quantize(CENT) if orders_count else None,
        largest_order_value=aggregates.largest,
        first_order_at=aggregates.first_at,
        last_order_at=last_order_at,
        refunds_count=aggregates.refunds,
        refunded_total=aggregates.refunded,
        cancelled_orders_count=aggregates.cancelled,
        orders_30d=windows[30][0],
        orders_90d=windows[90][0],
        orders_365d=windows[365][0],
        spent_30d=windows[30][1],
        spent_90d=windows[90][1],
        spent_365d=windows[365][1],
        product_type_counts=dict(type_counts),
        vendor_counts=dict(aggregates.vendors),
        product_counts=dict(aggregates.products),
        top_product_type=_top(type_counts),
        abandoned_checkouts=len(abandoned),
        last_abandoned_checkout_at=max(abandoned) if abandoned else None,
        page_views=state.counters.get("page_views", 0),
        product_views=state.counters.get("product_views", 0),
        added_to_cart=state.counters.get("added_to_cart", 0),
        emails_opened=state.counters.get("emails_opened", 0),
        emails_clicked=state.counters.get("emails_clicked", 0),
        reviews_written=state.counters.get("reviews_written", 0),
        referrals=state.counters.get("referrals", 0),
        last_engaged_at=state.last_engaged_at,
        rfm_recency=rfm[0] if rfm else None,
        rfm_frequency=rfm[1] if rfm else None,
        rfm_monetary=rfm[2] if rfm else None,
        rfm_segment=rfm_segment(*rfm) if rfm else None,
        lifecycle_stage=lifecycle_stage(orders_count, days_since_last),
    )
    return facts, _earliest_after(now, changes)
