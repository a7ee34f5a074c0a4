"""Shopify admin's customer CSV export ("customers_export.csv") → customers/update payloads.

Headers differ between export generations; each field is looked up under every name it has had:
- current: Customer ID, First Name, Last Name, Email, Accepts Email Marketing, Default Address
  Company|Address1|Address2|City|Province Code|Country Code|Zip|Phone, Phone, Accepts SMS
  Marketing, Total Spent, Total Orders, Note, Tax Exempt, Tags (later also Accepts WhatsApp
  Marketing and "Label (customer.metafields.ns.key)" columns);
- earlier: Company, Address1, Address2, City, Province, Province Code, Country, Country Code,
  Zip, with "Accepts Marketing" before the email/SMS split and no Customer ID at first.
Shopify writes numbers that spreadsheets would mangle with a leading apostrophe ("'7985351721238").
"""

import csv
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from services.common.shopify import parse_shopify_id
from services.segmenter.importer.records import CUSTOMER_TOPIC, ImportRecord, Rejection

_ID = ("Customer ID", "ID")
_EMAIL = ("Email",)
_FIRST_NAME = ("First Name",)
_LAST_NAME = ("Last Name",)
_EMAIL_CONSENT = ("Accepts Email Marketing", "Accepts Marketing")
_SMS_CONSENT = ("Accepts SMS Marketing",)
_CITY = ("Default Address City", "City")
_PROVINCE_CODE = ("Default Address Province Code", "Province Code")
_COUNTRY_CODE = ("Default Address Country Code", "Country Code")
_TOTAL_SPENT = ("Total Spent",)
_TOTAL_ORDERS = ("Total Orders",)
_TAGS = ("Tags",)

# Where DictReader puts cells beyond the header's length.
_EXTRA = "\x00extra"
_YES = frozenset({"yes", "true", "1", "y"})
_NO = frozenset({"no", "false", "0", "n"})


class RowError(ValueError):
    """A row that cannot be imported; the message says why."""


def _cell(row: Mapping[str, str | None], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = row.get(name)
        if value is not None:
            # The apostrophe only stops spreadsheets from reading the cell as a number.
            text = value.strip().removeprefix("'").strip()
            return text or None
    return None


def _consent(row: Mapping[str, str | None], names: tuple[str, ...]) -> dict[str, str] | None:
    value = _cell(row, names)
    if value is None:
        return None
    if value.lower() in _YES:
        return {"state": "subscribed"}
    if value.lower() in _NO:
        return {"state": "not_subscribed"}
    raise RowError(f"{names[0]} {value!r} is neither yes nor no")


def _money(row: Mapping[str, str | None], names: tuple[str, ...]) -> Decimal | None:
    value = _cell(row, names)
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise RowError(f"{names[0]} {value!r} is not a decimal amount") from exc
    if not amount.is_finite():
        raise RowError(f"{names[0]} {value!r} is not a decimal amount")
    return amount


def _count(row: Mapping[str, str | None], names: tuple[str, ...]) -> int | None:
    value = _cell(row, names)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise RowError(f"{names[0]} {value!r} is not a whole number")
    return int(value)


def customer_payload(row: Mapping[str, str | None]) -> dict[str, Any]:
    """The REST customer payload of one CSV row; raises RowError for a row that cannot be used."""
    raw_id = _cell(row, _ID)
    if raw_id is None:
        raise RowError("no Customer ID (exports made before the column existed cannot be used)")
    try:
        customer_id = parse_shopify_id(raw_id)
    except ValueError:
        customer_id = None
    if customer_id is None:
        raise RowError(f"Customer ID {raw_id!r} is not a Shopify id")

    payload: dict[str, Any] = {"id": customer_id}
    email = _cell(row, _EMAIL)
    if email is not None:
        payload["email"] = email
    for key, names in (("first_name", _FIRST_NAME), ("last_name", _LAST_NAME)):
        name = _cell(row, names)
        if name is not None:
            payload[key] = name
    tags = _cell(row, _TAGS)
    if tags is not None:
        payload["tags"] = tags
    address = {
        key: value
        for key, value in (
            ("city", _cell(row, _CITY)),
            ("province_code", _cell(row, _PROVINCE_CODE)),
            ("country_code", _cell(row, _COUNTRY_CODE)),
        )
        if value is not None
    }
    if address:
        payload["default_address"] = address
    email_consent = _consent(row, _EMAIL_CONSENT)
    if email_consent is not None:
        payload["email_marketing_consent"] = email_consent
    sms_consent = _consent(row, _SMS_CONSENT)
    if sms_consent is not None:
        payload["sms_marketing_consent"] = sms_consent
    orders_count = _count(row, _TOTAL_ORDERS)
    if orders_count is not None:
        payload["orders_count"] = orders_count
    total_spent = _money(row, _TOTAL_SPENT)
    if total_spent is not None:
        payload["total_spent"] = total_spent
    return payload


def read_customers_csv(lines: Iterable[str]) -> Iterator[ImportRecord | Rejection]:
    """Records (or rejections) for each data row; line numbers are those of the row's first line.

    `lines` is an open text file (newline="") or any iterable of lines with their endings.
    """
    reader = csv.DictReader(lines, restkey=_EXTRA)
    if reader.fieldnames is None:
        return
    # Headers are matched without surrounding spaces, as some tools write "Email ".
    reader.fieldnames = [name.strip() for name in reader.fieldnames]
    start = reader.line_num + 1
    for row in reader:
        if _EXTRA in row:
            yield Rejection(start, f"{len(row[_EXTRA])} more cell(s) than the header has")
        elif any(value is None for value in row.values()):
            yield Rejection(start, "fewer cells than the header has")
        else:
            try:
                yield ImportRecord(CUSTOMER_TOPIC, customer_payload(row), start)
            except RowError as exc:
                yield Rejection(start, str(exc))
        start = reader.line_num + 1
