"""Shopify's own totals as a floor, imported values without a time, and order ownership."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.domain.derive import derive_facts
from services.segmenter.domain.reducer import Event, apply
from services.segmenter.domain.state import CustomerState
from services.segmenter.importer.graphql import customer_payload, order_payload
from services.segmenter.importer.records import CUSTOMER_TOPIC, ORDER_TOPIC, ImportRecord, event_for
from tests.unit.segmenter.domain.test_reducer import facts_after
from tests.unit.segmenter.events import CUSTOMER, NOW, SHOP, at, order, shopify_event


def legacy_customer(orders_count: int, spent: str, updated: datetime) -> Event:
    """A customers/update as API versions before 2024-10 send it, with Shopify's totals."""
    return shopify_event(
        "customers/update",
        {
            "id": CUSTOMER,
            "updated_at": updated.isoformat(),
            "orders_count": orders_count,
            "total_spent": spent,
        },
        event_id=f"c-{updated.isoformat()}",
        when=updated,  # the webhook was triggered by that update: its totals are as of then
    )


def csv_row(**fields: Any) -> Event:
    """A customer row of the admin CSV export (no time), as the importer turns it into."""
    return event_for(ImportRecord(CUSTOMER_TOPIC, {"id": CUSTOMER, **fields}, 2), NOW)


def test_orders_after_shopify_totals_add_to_them() -> None:
    totals = legacy_customer(5, "500.00", at(10))
    later = [
        shopify_event("orders/create", order(n, "200.00", placed=at(5 - n))) for n in range(1, 4)
    ]
    for events in ([totals, *later], [*later, totals], [later[0], totals, *later[1:]]):
        facts = facts_after(events)
        assert (facts.orders_count, facts.total_spent) == (8, Decimal("1100.00"))
        assert facts.average_order_value == Decimal("137.50")


def test_orders_before_shopify_totals_are_covered_by_them() -> None:
    earlier = [
        shopify_event("orders/create", order(n, "200.00", placed=at(20 + n))) for n in (1, 2)
    ]
    facts = facts_after([*earlier, legacy_customer(5, "500.00", at(10))])
    assert (facts.orders_count, facts.total_spent) == (5, Decimal("500.00"))
    # More known orders than Shopify counted then: the known ones win.
    facts = facts_after([*earlier, legacy_customer(1, "150.00", at(10))])
    assert (facts.orders_count, facts.total_spent) == (2, Decimal("400.00"))


def test_a_refund_after_shopify_totals_comes_off_them() -> None:
    placed = order(1, "200.00", placed=at(20))
    refunded = {
        "id": 9,
        "order_id": 1,
        "created_at": at(5).isoformat(),
        "processed_at": at(5).isoformat(),
        "transactions": [{"kind": "refund", "status": "success", "amount": "50.00"}],
    }
    facts = facts_after(
        [
            shopify_event("orders/create", placed),
            legacy_customer(3, "600.00", at(10)),
            shopify_event("refunds/create", refunded),
        ]
    )
    assert (facts.orders_count, facts.total_spent) == (3, Decimal("550.00"))


def test_a_customer_known_only_from_an_export_ages_from_its_last_order() -> None:
    node = {
        "id": f"gid://shopify/Customer/{CUSTOMER}",
        "updatedAt": at(95).isoformat(),
        "numberOfOrders": "3",
        "amountSpent": {"amount": "450.00", "currencyCode": "USD"},
        "lastOrder": {"id": "gid://shopify/Order/1", "processedAt": at(100).isoformat()},
    }
    event = event_for(ImportRecord(CUSTOMER_TOPIC, customer_payload(node), 1), NOW)
    state = apply(CustomerState(SHOP, CUSTOMER), event)
    facts, next_change = derive_facts(state, {}, NOW)
    assert facts.orders_count == 3
    assert facts.last_order_at == at(100)
    assert facts.lifecycle_stage == "at_risk"
    assert facts.rfm_recency == 2
    # It moves on by itself: churned the day after 180 days.
    assert next_change == at(100 - 181)


def test_an_imported_row_without_a_time_never_overrides_a_live_value() -> None:
    unsubscribed = shopify_event(
        "customers/update",
        {
            "id": CUSTOMER,
            "updated_at": at(2).isoformat(),
            "email": "new@example.com",
            "email_marketing_consent": {"state": "unsubscribed", "consent_updated_at": None},
            "default_address": {"city": "Berlin", "country_code": "DE"},
            "tags": "wholesale",
        },
    )
    exported = csv_row(
        email="old@example.com",
        email_marketing_consent={"state": "subscribed"},
        default_address={"city": "Paris", "country_code": "FR"},
        tags="vip",
    )
    for events in ([unsubscribed, exported], [exported, unsubscribed]):
        facts = facts_after(events)
        assert facts.accepts_email_marketing is False
        assert (facts.email, facts.city, facts.country_code) == ("new@example.com", "Berlin", "DE")
        assert facts.tags == ("wholesale",)


def test_an_imported_row_fills_what_nothing_else_says_and_a_later_row_replaces_it() -> None:
    first = csv_row(email="a@example.com", email_marketing_consent={"state": "subscribed"})
    second = csv_row(email="b@example.com")
    facts = facts_after([first, second])
    assert facts.email == "b@example.com"
    assert facts.accepts_email_marketing is True


def test_csv_totals_are_a_floor_as_of_the_import() -> None:
    exported = csv_row(orders_count=4, total_spent="1000.00")  # imported at NOW
    before = shopify_event("orders/create", order(1, "100.00", placed=at(30)))
    after = shopify_event("orders/create", order(2, "300.00", placed=at(-0.5)))
    for events in ([before, exported, after], [after, exported, before]):
        facts = facts_after(events)
        assert (facts.orders_count, facts.total_spent) == (5, Decimal("1300.00"))


def test_an_order_payload_naming_another_customer_does_not_change_this_one() -> None:
    other = {**order(1, "10.00", placed=at(1)), "customer": {"id": 42, "email": "x@y.z"}}
    state = apply(CustomerState(SHOP, CUSTOMER), shopify_event("orders/create", other))
    assert state.attribute("email") is None


def test_a_tag_heard_of_only_from_an_older_event_stays_absent_after_a_newer_full_list() -> None:
    added = shopify_event(
        "customer.tags_added",
        {"customerId": CUSTOMER, "tags": ["old"], "occurredAt": at(5).isoformat()},
    )
    listed = shopify_event(
        "customers/update", {"id": CUSTOMER, "updated_at": at(2).isoformat(), "tags": "new"}
    )
    for events in ([added, listed], [listed, added]):
        assert facts_after(events).tags == ("new",)


def _jpy_order(order_id: int, updated: float, refunds: list[dict[str, Any]]) -> dict[str, Any]:
    payload = order(order_id, "100.00", placed=at(40), updated=at(updated), refunds=refunds)
    payload["total_price_set"] = {
        "shop_money": {"amount": "100.00", "currency_code": "USD"},
        "presentment_money": {"amount": "15000", "currency_code": "JPY"},
    }
    return payload


def _jpy_refund(status: str) -> dict[str, Any]:
    return {
        "id": 31,
        "order_id": 7,
        "created_at": at(30).isoformat(),
        "transactions": [
            {"kind": "refund", "status": status, "amount": "1500", "currency": "JPY"},
            {"kind": "refund", "status": "failure", "amount": "9000", "currency": "JPY"},
        ],
    }


MIXED_HISTORY = [
    legacy_customer(4, "700.00", at(50)),
    shopify_event("orders/create", order(1, "300.00", placed=at(60))),
    shopify_event("orders/create", order(2, "120.00", placed=at(20)), event_id="o2"),
    shopify_event("orders/create", _jpy_order(7, 39, []), event_id="o7"),
    shopify_event("refunds/create", _jpy_refund("pending"), event_id="r31"),
    shopify_event("orders/updated", _jpy_order(7, 29, [_jpy_refund("success")]), event_id="u7"),
    csv_row(email="csv@example.com", tags="imported", total_spent="50.00", orders_count=1),
    shopify_event(
        "customer.tags_added",
        {"customerId": CUSTOMER, "tags": ["late"], "occurredAt": at(55).isoformat()},
    ),
    shopify_event(
        "customers/update",
        {"id": CUSTOMER, "updated_at": at(45).isoformat(), "tags": "kept", "email": "x@y.z"},
    ),
]


@settings(max_examples=80, derandomize=True, deadline=None)
@given(order_of_events=st.permutations(range(len(MIXED_HISTORY))))
def test_refund_versions_totals_and_tag_lists_do_not_depend_on_delivery_order(
    order_of_events: list[int],
) -> None:
    expected = facts_after(MIXED_HISTORY)
    assert facts_after([MIXED_HISTORY[i] for i in order_of_events]) == expected
    # 4 orders by Shopify's count at day 50 cover order 1; orders 2 and 7 came after.
    assert (expected.orders_count, expected.tags) == (6, ("kept",))
    assert expected.total_spent == Decimal("700.00") + Decimal("120.00") + Decimal("90.00")


def test_exported_totals_are_as_of_the_export_not_the_last_profile_edit() -> None:
    # Profile last edited 400 days ago; the export (3 orders, 450) is taken now, after every
    # one of the three exported orders.
    node = {
        "id": f"gid://shopify/Customer/{CUSTOMER}",
        "updatedAt": at(400).isoformat(),
        "numberOfOrders": "3",
        "amountSpent": {"amount": "450.00", "currencyCode": "USD"},
    }
    events = [event_for(ImportRecord(CUSTOMER_TOPIC, customer_payload(node), 1), NOW)]
    for n, days in enumerate((100, 50, 10), 1):
        placed = at(days).isoformat()
        exported = {
            "id": f"gid://shopify/Order/{n}",
            "createdAt": placed,
            "updatedAt": placed,
            "processedAt": placed,
            "totalPriceSet": {"shopMoney": {"amount": "150.00", "currencyCode": "USD"}},
        }
        record = ImportRecord(ORDER_TOPIC, order_payload(exported, customer_id=CUSTOMER), n)
        events.append(event_for(record, NOW))
    facts = facts_after(events)
    assert (facts.orders_count, facts.total_spent) == (3, Decimal("450.00"))


def test_a_cancellation_refunded_after_shopify_totals_comes_off_them() -> None:
    placed = order(1, "100.00", placed=at(20))
    cancelled = order(
        1,
        "100.00",
        placed=at(20),
        updated=at(2),
        cancelled=at(2),
        refunds=[
            {
                "id": 5,
                "order_id": 1,
                "created_at": at(2).isoformat(),
                "transactions": [{"kind": "refund", "status": "success", "amount": "100.00"}],
            }
        ],
    )
    facts = facts_after(
        [
            shopify_event("orders/create", placed),
            legacy_customer(1, "100.00", at(10)),
            shopify_event("orders/cancelled", cancelled),
        ]
    )
    assert facts.total_spent == 0
