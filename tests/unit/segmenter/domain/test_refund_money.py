"""Refunds in shop money, refund versions, and test orders: what spend and refund facts count."""

from decimal import Decimal
from typing import Any

from services.common.shopify import Refund
from services.segmenter.domain.reducer import Event, apply_refund
from services.segmenter.importer.graphql import order_payload
from services.segmenter.storage.rows import order_from_row
from tests.unit.segmenter.domain.test_reducer import facts_after
from tests.unit.segmenter.events import at, order, refund, shopify_event


def jpy_order(order_id: int = 1) -> dict[str, Any]:
    """A USD shop's order of 100 USD, paid as 15,000 JPY."""
    return {
        **order(order_id, "100.00", placed=at(5)),
        "currency": "USD",
        "presentment_currency": "JPY",
        "total_price_set": {
            "shop_money": {"amount": "100.00", "currency_code": "USD"},
            "presentment_money": {"amount": "15000", "currency_code": "JPY"},
        },
    }


def jpy_refund(*, lines: bool = True, shop_money: bool = False) -> dict[str, Any]:
    """A refund of 1,500 JPY (10 USD) of order 1, as refunds/create sends it."""
    transaction: dict[str, Any] = {
        "kind": "refund",
        "status": "success",
        "amount": "1500",
        "currency": "JPY",
    }
    if shop_money:
        transaction["amount_set"] = {
            "shop_money": {"amount": "10.00", "currency_code": "USD"},
            "presentment_money": {"amount": "1500", "currency_code": "JPY"},
        }
    payload: dict[str, Any] = {
        "id": 77,
        "order_id": 1,
        "created_at": at(2).isoformat(),
        "processed_at": at(2).isoformat(),
        "refund_line_items": [],
        "transactions": [transaction],
        "order_adjustments": [],
    }
    if lines:
        payload["refund_line_items"] = [
            {
                "line_item_id": 1,
                "quantity": 1,
                "subtotal": Decimal(1500),
                "total_tax": Decimal(0),
                "subtotal_set": {
                    "shop_money": {"amount": "10.00", "currency_code": "USD"},
                    "presentment_money": {"amount": "1500", "currency_code": "JPY"},
                },
                "total_tax_set": {
                    "shop_money": {"amount": "0.00", "currency_code": "USD"},
                    "presentment_money": {"amount": "0", "currency_code": "JPY"},
                },
            }
        ]
    return payload


def both_ways(first: Event, second: Event) -> list[list[Event]]:
    return [[first, second], [second, first]]


def test_a_presentment_currency_refund_is_counted_in_shop_money_either_way_round() -> None:
    placed = shopify_event("orders/create", jpy_order())
    for refunded in (
        shopify_event("refunds/create", jpy_refund()),
        shopify_event("refunds/create", jpy_refund(lines=False)),
        shopify_event("refunds/create", jpy_refund(shop_money=True)),
    ):
        for events in both_ways(placed, refunded):
            facts = facts_after(events)
            assert facts.total_spent == Decimal("90.00")
            assert facts.refunded_total == Decimal("10.00")


def test_a_refund_before_its_order_converts_at_the_rate_of_its_own_lines() -> None:
    # No order yet: the refund lines state both currencies, so the transaction converts.
    facts = facts_after([shopify_event("refunds/create", jpy_refund())])
    assert facts.refunded_total == 0  # the order is not known, so it counts for nobody
    placed = shopify_event("orders/create", jpy_order())
    assert facts_after([shopify_event("refunds/create", jpy_refund()), placed]).total_spent == (
        Decimal("90.00")
    )


def test_an_imported_refund_is_in_shop_money_like_a_live_one() -> None:
    node = {
        "id": "gid://shopify/Order/1",
        "createdAt": at(5).isoformat(),
        "updatedAt": at(2).isoformat(),
        "processedAt": at(5).isoformat(),
        "totalPriceSet": {
            "shopMoney": {"amount": "100.00", "currencyCode": "USD"},
            "presentmentMoney": {"amount": "15000", "currencyCode": "JPY"},
        },
        "refunds": [
            {
                "id": "gid://shopify/Refund/77",
                "createdAt": at(2).isoformat(),
                "totalRefundedSet": {
                    "shopMoney": {"amount": "10.00", "currencyCode": "USD"},
                    "presentmentMoney": {"amount": "1500", "currencyCode": "JPY"},
                },
            }
        ],
    }
    payload = order_payload(node, [], [], customer_id=115310627314723954)
    facts = facts_after([shopify_event("orders/create", payload)])
    assert facts.total_spent == Decimal("90.00")
    assert facts.refunded_total == Decimal("10.00")


def _with_transaction(status: str, amount: str = "50.00") -> dict[str, Any]:
    return {
        **refund(77, 1, "50.00", when=at(2)),
        "transactions": [{"kind": "refund", "status": status, "amount": amount}],
    }


def test_a_pending_refund_is_corrected_by_its_settled_version() -> None:
    placed = order(1, "200.00", placed=at(5))
    pending = _with_transaction("pending")
    failed = _with_transaction("failure")
    settled_order = {**order(1, "200.00", placed=at(5), updated=at(1)), "refunds": [failed]}
    events = [
        shopify_event("orders/create", placed),
        shopify_event("refunds/create", pending),
        shopify_event("orders/updated", settled_order),
    ]
    # The refund failed in the end: nothing was given back, whatever lines it listed.
    for ordering in (events, [events[0], events[2], events[1]]):
        facts = facts_after(ordering)
        assert facts.total_spent == Decimal("200.00")
        assert facts.refunded_total == 0
    # While only the pending version is known, it counts as given back.
    assert facts_after(events[:2]).total_spent == Decimal("150.00")


def test_a_failed_refund_transaction_does_not_count_its_lines() -> None:
    facts = facts_after(
        [
            shopify_event("orders/create", order(1, "200.00", placed=at(5))),
            shopify_event("refunds/create", _with_transaction("failure")),
        ]
    )
    assert facts.total_spent == Decimal("200.00")
    assert facts.refunded_total == 0


def test_refunds_and_cancellations_of_test_orders_are_not_counted() -> None:
    refunded = refund(77, 1, "20.00", when=at(2))
    test_order = {**order(1, "80.00", placed=at(5)), "test": True}
    cancelled_test = {
        **order(2, "30.00", placed=at(4), updated=at(3), cancelled=at(3)),
        "test": True,
    }
    facts = facts_after(
        [
            shopify_event("orders/create", test_order),
            shopify_event("refunds/create", refunded),
            shopify_event("orders/cancelled", cancelled_test),
        ]
    )
    assert (facts.orders_count, facts.total_spent) == (0, Decimal(0))
    assert (facts.refunds_count, facts.refunded_total) == (0, Decimal(0))
    assert facts.cancelled_orders_count == 0


def test_a_converted_refund_rounds_to_the_shop_currencys_minor_unit() -> None:
    # GraphQL writes "259.0": the rounding comes from the currency, not the string.
    def eur_order(currency: str, total: str) -> dict[str, Any]:
        return {
            **order(1, total, placed=at(5)),
            "currency": currency,
            "total_price_set": {
                "shop_money": {"amount": total, "currency_code": currency},
                "presentment_money": {"amount": "92.0", "currency_code": "GBP"},
            },
        }

    def gbp_refund(amount: str) -> dict[str, Any]:
        return {
            "id": 9,
            "order_id": 1,
            "created_at": at(2).isoformat(),
            "transactions": [
                {"kind": "refund", "status": "success", "amount": amount, "currency": "GBP"}
            ],
        }

    for currency, total, expected in (("EUR", "100.0", "10.86"), ("JPY", "100", "11")):
        facts = facts_after(
            [
                shopify_event("orders/create", eur_order(currency, total)),
                shopify_event("refunds/create", gbp_refund("9.99")),
            ]
        )
        assert facts.refunded_total == Decimal(expected)


def test_a_refund_stored_by_the_previous_version_is_open_to_correction() -> None:
    # Rows written before presentment money was kept hold [amount, at] only; that version
    # counted a failed refund by its lines.
    row = {"order_id": 1, "customer_id": 5, "facts": None, "refunds": '{"77": ["50.00", null]}'}
    stored = order_from_row(row)
    assert stored.refunded == Decimal("50.00")
    failed = shopify_event("refunds/create", _with_transaction("failure")).payload
    assert isinstance(failed, Refund)
    corrected = apply_refund(stored, failed)
    assert corrected.refunded == 0
    assert corrected.refunds[77].final
