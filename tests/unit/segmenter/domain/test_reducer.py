"""The reducer: each topic, duplicates, and any delivery order giving the same facts."""

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.domain.derive import derive_facts
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.reducer import Event, apply, parse_birthday, refund_fact
from services.segmenter.domain.state import CustomerState, ProductFact
from tests.unit.segmenter.events import (
    CUSTOMER,
    NOW,
    SHOP,
    at,
    custom_event,
    order,
    refund,
    shopify_event,
)

CATALOG = {
    632910392: ProductFact(632910392, "Apparel", "Acme"),
    921728736: ProductFact(921728736, "Shoes", "Stride"),
}


def facts_after(
    events: list[Event], catalog: dict[int, ProductFact] | None = None
) -> CustomerFacts:
    state = CustomerState(SHOP, CUSTOMER)
    for event in events:
        state = apply(state, event)
    facts, _ = derive_facts(state, CATALOG if catalog is None else catalog, NOW)
    return facts


def test_create_and_paid_of_one_order_count_once() -> None:
    payload = order(1, "150.00", placed=at(3))
    facts = facts_after(
        [shopify_event("orders/create", payload), shopify_event("orders/paid", payload)]
    )
    assert facts.orders_count == 1
    assert facts.total_spent == Decimal("150.00")
    assert facts.average_order_value == Decimal("150.00")
    assert facts.first_order_at == facts.last_order_at == at(3)


def test_cancellation_removes_the_order_from_counts_whichever_comes_first() -> None:
    placed = order(1, "80.00", placed=at(3))
    cancelled = order(1, "80.00", placed=at(3), updated=at(2), cancelled=at(2))
    for events in (
        [shopify_event("orders/create", placed), shopify_event("orders/cancelled", cancelled)],
        [shopify_event("orders/cancelled", cancelled), shopify_event("orders/create", placed)],
    ):
        facts = facts_after(events)
        assert facts.orders_count == 0
        assert facts.total_spent == 0
        assert facts.cancelled_orders_count == 1


def test_refund_is_subtracted_once_from_either_delivery() -> None:
    placed = order(1, "200.00", placed=at(10))
    refunded = refund(77, 1, "50.00", when=at(5))
    updated = order(1, "200.00", placed=at(10), updated=at(5), refunds=[refunded])
    facts = facts_after(
        [
            shopify_event("orders/create", placed),
            shopify_event("refunds/create", refunded),
            shopify_event("orders/updated", updated),
        ]
    )
    assert facts.total_spent == Decimal("150.00")
    assert facts.refunds_count == 1
    assert facts.refunded_total == Decimal("50.00")


def test_refund_transactions_are_what_left_the_shop() -> None:
    event = shopify_event(
        "refunds/create",
        {
            **refund(1, 1, "414.95", when=at(1)),
            "transactions": [
                {"kind": "refund", "status": "success", "amount": "75.00"},
                {"kind": "refund", "status": "success", "amount": "10.00"},
                {"kind": "refund", "status": "failure", "amount": "99.00"},
            ],
        },
    )
    fact = refund_fact(event.payload)  # type: ignore[arg-type]
    assert fact.in_shop_money(None, -2) == Decimal("85.00")


def test_test_orders_do_not_count() -> None:
    payload = {**order(1, "150.00", placed=at(3)), "test": True}
    assert facts_after([shopify_event("orders/create", payload)]).orders_count == 0


def test_rolling_windows_and_when_they_change() -> None:
    events = [
        shopify_event("orders/create", order(1, "10.00", placed=at(5))),
        shopify_event("orders/create", order(2, "20.00", placed=at(45))),
        shopify_event("orders/create", order(3, "40.00", placed=at(200))),
    ]
    state = CustomerState(SHOP, CUSTOMER)
    for event in events:
        state = apply(state, event)
    facts, until = derive_facts(state, CATALOG, NOW)
    assert (facts.orders_30d, facts.orders_90d, facts.orders_365d) == (1, 2, 3)
    assert (facts.spent_30d, facts.spent_90d, facts.spent_365d) == (
        Decimal("10.00"),
        Decimal("30.00"),
        Decimal("70.00"),
    )
    # The order 5 days old leaves the 30-day window 25 days from now: nothing changes sooner.
    assert until == at(5) + timedelta(days=30)
    later, _ = derive_facts(state, CATALOG, until)
    assert later.orders_30d == 0
    earlier, _ = derive_facts(state, CATALOG, until - timedelta(microseconds=1))
    assert earlier.orders_30d == 1


def test_product_types_come_from_the_catalog_and_unknown_ones_resolve_later() -> None:
    events = [
        shopify_event(
            "orders/create",
            order(1, "90.00", placed=at(3), lines=[(632910392, None), (921728736, "Stride")]),
        ),
        shopify_event("orders/create", order(2, "60.00", placed=at(2), lines=[(632910392, None)])),
        shopify_event("orders/create", order(3, "30.00", placed=at(1), lines=[(555, "Nobody")])),
    ]
    facts = facts_after(events)
    assert dict(facts.product_type_counts) == {"Apparel": 2, "Shoes": 1}
    assert dict(facts.vendor_counts) == {"Acme": 2, "Stride": 1, "Nobody": 1}
    assert facts.top_product_type == "Apparel"
    assert dict(facts.product_counts) == {"632910392": 2, "921728736": 1, "555": 1}
    later = facts_after(events, {**CATALOG, 555: ProductFact(555, "Shoes")})
    assert dict(later.product_type_counts) == {"Apparel": 2, "Shoes": 2}


def test_profile_attributes_last_writer_wins_on_updated_at() -> None:
    older = {
        "id": CUSTOMER,
        "email": "old@example.com",
        "created_at": at(400).isoformat(),
        "updated_at": at(10).isoformat(),
        "default_address": {"country_code": "US", "province_code": "NY", "city": "New York"},
    }
    newer = {
        **older,
        "email": "new@example.com",
        "updated_at": at(1).isoformat(),
        "default_address": {"country_code": "CN", "city": "Shanghai"},
    }
    for pair in ((older, newer), (newer, older)):
        facts = facts_after([shopify_event("customers/update", p) for p in pair])
        assert facts.email == "new@example.com"
        assert facts.country_code == "CN"
        assert facts.city == "Shanghai"
        # Absent in the newer payload means unknown there, so the older value stays.
        assert facts.province_code == "NY"
        assert facts.registered_at == at(400)


def test_tags_from_tag_topics_and_old_tag_strings() -> None:
    added = {"customerId": f"gid://shopify/Customer/{CUSTOMER}", "tags": ["wholesale", "gold"]}
    removed = {"customerId": f"gid://shopify/Customer/{CUSTOMER}", "tags": ["gold"]}
    events = [
        shopify_event("customer.tags_added", {**added, "occurredAt": at(3).isoformat()}),
        shopify_event("customer.tags_removed", {**removed, "occurredAt": at(2).isoformat()}),
    ]
    assert facts_after(events).tags == ("wholesale",)
    assert facts_after(list(reversed(events))).tags == ("wholesale",)
    snapshot = {"id": CUSTOMER, "tags": "vip-import, wholesale", "updated_at": at(1).isoformat()}
    assert facts_after([*events, shopify_event("customers/update", snapshot)]).tags == (
        "vip-import",
        "wholesale",
    )


def test_marketing_consent_topics() -> None:
    email = {
        "customer_id": CUSTOMER,
        "email_address": "jon@example.com",
        "email_marketing_consent": {"state": "SUBSCRIBED", "consent_updated_at": at(2).isoformat()},
    }
    sms = {"id": CUSTOMER, "sms_marketing_consent": {"state": "subscribed"}}
    facts = facts_after(
        [
            shopify_event("customers_email_marketing_consent/update", email),
            shopify_event("customers_marketing_consent/update", sms),
        ]
    )
    assert facts.accepts_email_marketing is True
    assert facts.accepts_sms_marketing is True
    assert facts.email == "jon@example.com"


def test_purchasing_summary_is_a_floor_for_history_before_segflow() -> None:
    summary = {
        "customerId": f"gid://shopify/Customer/{CUSTOMER}",
        "numberOfOrders": "12",
        "amountSpent": {"amount": "2400.00", "currencyCode": "USD"},
    }
    facts = facts_after(
        [
            shopify_event("customers/purchasing_summary", summary),
            shopify_event("orders/create", order(1, "100.00", placed=at(1))),
        ]
    )
    assert facts.orders_count == 12
    assert facts.total_spent == Decimal("2400.00")


def test_abandoned_checkout_until_an_order_completes_it() -> None:
    checkout = {
        "token": "abc123",
        "created_at": at(1).isoformat(),
        "updated_at": at(1).isoformat(),
        "completed_at": None,
        "customer": {"id": CUSTOMER},
    }
    opened = shopify_event("checkouts/create", checkout)
    facts = facts_after([opened])
    assert facts.abandoned_checkouts == 1
    assert facts.last_abandoned_checkout_at == at(1)
    paid = shopify_event(
        "orders/create", order(1, "10.00", placed=at(0.5), checkout_token="abc123")
    )
    assert facts_after([opened, paid]).abandoned_checkouts == 0
    assert facts_after([paid, opened]).abandoned_checkouts == 0


def test_fresh_checkout_is_not_abandoned_yet() -> None:
    checkout = {"token": "t", "updated_at": (NOW - timedelta(minutes=10)).isoformat()}
    state = apply(CustomerState(SHOP, CUSTOMER), shopify_event("checkouts/update", checkout))
    facts, until = derive_facts(state, {}, NOW)
    assert facts.abandoned_checkouts == 0
    assert until == NOW + timedelta(minutes=50)


def test_custom_events_count_and_profile_updated_sets_birthday() -> None:
    facts = facts_after(
        [
            custom_event("product_viewed", when=at(3), product_id=1),
            custom_event("product_viewed", when=at(1), product_id=2),
            custom_event("email_clicked", when=at(2)),
            custom_event("profile_updated", when=at(2), birthday="1990-12-24"),
        ]
    )
    assert facts.product_views == 2
    assert facts.emails_clicked == 1
    assert facts.last_engaged_at == at(1)
    assert facts.birthday_month == 12


def test_birthday_formats() -> None:
    assert parse_birthday("1990-02-28") == "02-28"
    assert parse_birthday("--12-24") == "12-24"
    assert parse_birthday("07-04") == "07-04"
    assert parse_birthday("1990-13-01") is None
    assert parse_birthday(19901224) is None


def test_deleted_customer_is_marked() -> None:
    state = apply(
        CustomerState(SHOP, CUSTOMER), shopify_event("customers/delete", {"id": CUSTOMER})
    )
    assert state.deleted


def test_lifecycle_and_rfm_follow_the_last_order() -> None:
    events = [
        shopify_event("orders/create", order(n, "400.00", placed=at(100 + n))) for n in range(1, 4)
    ]
    facts = facts_after(events)
    assert facts.lifecycle_stage == "at_risk"
    assert (facts.rfm_recency, facts.rfm_frequency, facts.rfm_monetary) == (2, 3, 5)
    assert facts.rfm_segment == "cant_lose"
    assert facts_after([]).lifecycle_stage == "potential"
    assert facts_after([]).rfm_segment is None


HISTORY = [
    shopify_event(
        "customers/create",
        {
            "id": CUSTOMER,
            "created_at": at(300).isoformat(),
            "updated_at": at(300).isoformat(),
            "email": "a@x.io",
        },
    ),
    shopify_event(
        "customers/update",
        {"id": CUSTOMER, "updated_at": at(20).isoformat(), "email": "b@x.io", "tags": "one, two"},
    ),
    shopify_event("orders/create", order(1, "120.00", placed=at(40))),
    shopify_event("orders/paid", order(1, "120.00", placed=at(40), updated=at(39))),
    shopify_event("orders/create", order(2, "35.50", placed=at(10), lines=[(921728736, None)])),
    shopify_event("refunds/create", refund(9, 2, "5.50", when=at(9))),
    shopify_event("orders/create", order(3, "999.99", placed=at(8))),
    shopify_event(
        "orders/cancelled", order(3, "999.99", placed=at(8), updated=at(7), cancelled=at(7))
    ),
    shopify_event(
        "customer.tags_removed",
        {"customerId": CUSTOMER, "tags": ["two"], "occurredAt": at(5).isoformat()},
    ),
    custom_event("review_written", when=at(4)),
    shopify_event("checkouts/create", {"token": "c1", "updated_at": at(3).isoformat()}),
]


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    order_of_events=st.permutations(range(len(HISTORY))),
    repeats=st.lists(st.integers(0, len(HISTORY) - 1), max_size=4),
)
def test_any_delivery_order_and_duplicates_give_the_same_facts(
    order_of_events: list[int], repeats: list[int]
) -> None:
    expected = facts_after(HISTORY)
    # Duplicates are removed by event id before the reducer; the reducer must still be
    # idempotent for the order/refund facts, which a repeated payload must not double.
    shuffled = [HISTORY[i] for i in order_of_events]
    shuffled += [HISTORY[i] for i in repeats if not HISTORY[i].topic.startswith("custom/")]
    assert facts_after(shuffled) == expected
    assert expected.orders_count == 2
    assert expected.total_spent == Decimal("150.00")
    assert expected.tags == ("one",)


def test_state_is_not_changed_in_place() -> None:
    state = CustomerState(SHOP, CUSTOMER)
    after = apply(state, shopify_event("orders/create", order(1, "1.00", placed=at(1))))
    assert state.orders == {}
    assert replace(after, orders={}) != after
