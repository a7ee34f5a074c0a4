"""Shopify admin customer CSV exports (tests/fixtures/import) → customers/update payloads."""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from services.common.shopify import Customer
from services.segmenter.domain.state import UNKNOWN_TIME
from services.segmenter.importer.csv_customers import (
    RowError,
    customer_payload,
    read_customers_csv,
)
from services.segmenter.importer.records import ImportRecord, Rejection, event_for

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "import"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def read(name: str) -> list[ImportRecord | Rejection]:
    with (FIXTURES / name).open(encoding="utf-8-sig", newline="") as handle:
        return list(read_customers_csv(handle))


def test_current_export_rows_become_customer_payloads() -> None:
    items = read("customers_export.csv")
    records = [item for item in items if isinstance(item, ImportRecord)]
    assert [r.line for r in records] == [2, 3]
    ada = records[0]
    assert ada.topic == "customers/update"
    assert ada.payload == {
        "id": 7985351721238,
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "tags": "VIP, newsletter",
        "default_address": {"city": "Louisville", "province_code": "KY", "country_code": "US"},
        "email_marketing_consent": {"state": "subscribed"},
        "sms_marketing_consent": {"state": "not_subscribed"},
        "orders_count": 4,
        "total_spent": Decimal("1250.10"),
    }
    # The amount keeps its digits: no float ever held it.
    assert str(ada.payload["total_spent"]) == "1250.10"
    carl = records[1]
    assert "default_address" not in carl.payload and "tags" not in carl.payload
    assert carl.payload["email_marketing_consent"] == {"state": "not_subscribed"}


def test_bad_rows_are_rejected_with_their_line_and_reason() -> None:
    rejected = [item for item in read("customers_export.csv") if isinstance(item, Rejection)]
    # Carl's note spans lines 3-4, so the rows after it start one line later.
    assert rejected == [
        Rejection(5, "no Customer ID (exports made before the column existed cannot be used)"),
        Rejection(6, "Customer ID '12ab' is not a Shopify id"),
        Rejection(7, "Total Spent '12.3.4' is not a decimal amount"),
        Rejection(8, "fewer cells than the header has"),
    ]


def test_the_2022_header_names_are_read_too() -> None:
    [record] = read("customers_export_2022.csv")
    assert isinstance(record, ImportRecord)
    assert record.payload["default_address"] == {
        "city": "Louisville",
        "province_code": "KY",
        "country_code": "US",
    }
    assert record.payload["total_spent"] == Decimal("99.90")
    assert record.payload["orders_count"] == 2
    assert record.payload["sms_marketing_consent"] == {"state": "subscribed"}


def test_a_legacy_export_without_customer_ids_is_rejected_row_by_row() -> None:
    [item] = read("customers_export_legacy.csv")
    assert isinstance(item, Rejection)
    assert item.line == 2
    assert item.reason.startswith("no Customer ID")


def test_ids_above_2_53_stay_exact_and_gids_are_accepted() -> None:
    for raw in ("'820982911946154509", "gid://shopify/Customer/820982911946154509"):
        payload = customer_payload({"Customer ID": raw, "Email": "x@example.com"})
        assert payload["id"] == 820982911946154509


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ({"Customer ID": "'1", "Accepts Email Marketing": "maybe"}, "is neither yes nor no"),
        ({"Customer ID": "'1", "Total Orders": "2.5"}, "is not a whole number"),
        ({"Customer ID": "'1", "Total Spent": "NaN"}, "is not a decimal amount"),
        ({"Customer ID": "'-5"}, "is not a Shopify id"),
    ],
)
def test_cells_that_cannot_be_read_reject_the_row(cells: dict[str, str], reason: str) -> None:
    with pytest.raises(RowError, match=reason):
        customer_payload(cells)


def test_a_row_becomes_a_customer_event_whose_id_depends_on_content_only() -> None:
    [ada, *_] = read("customers_export.csv")
    assert isinstance(ada, ImportRecord)
    event = event_for(ada, NOW)
    assert isinstance(event.payload, Customer)
    assert event.payload.total_spent == Decimal("1250.10")
    assert event.payload.tags == ["VIP", "newsletter"]
    assert event.customer_id == 7985351721238
    # A CSV row carries no time: it never outranks a value that has one.
    assert event.occurred_at == UNKNOWN_TIME
    assert event.received_at == NOW
    assert event_for(ada, datetime(2027, 1, 1, tzinfo=UTC)).event_id == event.event_id
    changed = ImportRecord(ada.topic, {**ada.payload, "orders_count": 5}, ada.line)
    assert event_for(changed, NOW).event_id != event.event_id
    assert event.event_id.startswith("import:customers/update:7985351721238:")
