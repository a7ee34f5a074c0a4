"""The business-rules engine, the compiled Python function and the compiled SQL agree, on a real
PostgreSQL: for every variable and operator on a corpus of boundary facts, and on random facts
and random nested rules (hypothesis).

Text is Unicode: ASCII, hand-picked case-folding cases (Turkish İ, German ß, Greek final sigma,
ligatures, Cherokee, CJK) and random strings of code points assigned in Python's Unicode database
(its version, 14.0 on Python 3.11, is older than PostgreSQL 18's 16.0; a code point assigned
only later may fold differently, so none are drawn). NUL is left out: PostgreSQL text cannot
hold it.
"""

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from business_rules.engine import check_conditions_recursively
from business_rules.fields import (
    FIELD_NO_INPUT,
    FIELD_NUMERIC,
    FIELD_SELECT,
    FIELD_SELECT_MULTIPLE,
    FIELD_TEXT,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.common.shops import ShopCredentials
from services.segmenter.domain.facts import LIFECYCLE_STAGES, RFM_SEGMENTS, CustomerFacts
from services.segmenter.domain.rules.compile_py import compile_conditions
from services.segmenter.domain.rules.compile_sql import compile_where
from services.segmenter.domain.rules.operators import (
    EPSILON,
    FIELD_KEY_COUNT,
    FIELD_NUMERIC_RANGE,
    to_decimal,
)
from services.segmenter.domain.rules.validate import validate_conditions
from services.segmenter.domain.rules.variables import VARIABLES, SegmentVariables
from services.segmenter.storage.rows import FACT_COLUMNS, facts_to_row

NOW = datetime(2026, 3, 15, 12, 0, 0, 250_000, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
D = Decimal

# Case-insensitive comparison folds these alike only with full Unicode case folding.
UNICODE_TEXTS = [
    "İstanbul",
    "i̇stanbul",
    "istanbul",
    "STRASSE",
    "straße",
    "ẞ",
    "ΣΊΣΥΦΟΣ",
    "σίσυφος",
    "服装",
    "ǅ",
    "ﬃ",
    "K",
    "Ꭰꭰ",
    "café",
    "cafe\u0301",
]
TEXTS = [
    *UNICODE_TEXTS,
    "",
    "a",
    "A",
    "ab",
    "aB",
    "abc",
    "b",
    "a b",
    "a.b",
    "ab\n",
    "b\n",
    "a\nb",
    "US",
    "us",
    "at_risk",
]
NAMES = ["VIP", "vip", "Wholesale", "new", "a b", "123", "İstanbul", "straße", "ΣΊΣΥΦΟΣ", "服装"]
KEYS = [
    "Apparel",
    "apparel",
    "APPAREL",
    "Shoes",
    "Hats",
    "123",
    "456",
    "STRASSE",
    "straße",
    "i̇stanbul",
    "σίσυφος",
    "服装",
]
REGEXES = [
    "^a",
    "b$",
    "a.b",
    "^$",
    "(a|b)+",
    "[A-Z]",
    "[^a]",
    r"\.",
    "b.",
    "^.*$",
    "a{2}",
    "^(ab|U)",
    "^b$",
]
OFFSETS = (D(0), EPSILON, -EPSILON, EPSILON / 2, -EPSILON / 2, 2 * EPSILON, D(1), D(-1), D("0.5"))

# (variable, operator, input type) for every operator of every variable.
PAIRS = [
    (name, op["name"], op["input_type"])
    for name, variable in VARIABLES.items()
    for op in variable.field_type.get_all_operators()
]


def facts(customer_id: int, **fields: Any) -> CustomerFacts:
    return CustomerFacts(shop_id=0, customer_id=customer_id, **fields)


CORPUS = [
    facts(1),
    facts(
        2,
        registered_at=NOW - 30 * DAY,
        first_order_at=NOW - 365 * DAY,
        last_order_at=NOW - 90 * DAY - US,
        last_engaged_at=NOW + US,
        last_abandoned_checkout_at=NOW - DAY + US,
        email="Ab@example.com",
        accepts_email_marketing=True,
        country_code="US",
        city="a b",
        birthday_month=12,
        tags=("VIP", "vip", "a b"),
        orders_count=3,
        total_spent=D("200"),
        average_order_value=D("200.000001"),
        largest_order_value=D("199.9999995"),
        orders_30d=1,
        spent_30d=D("49.99"),
        product_type_counts={"Apparel": 2, "apparel": 1, "Shoes": 0},
        vendor_counts={"Acme": 1},
        product_counts={"123": 2},
        top_product_type="Apparel",
        rfm_recency=5,
        rfm_frequency=1,
        rfm_monetary=3,
        rfm_segment="at_risk",
        lifecycle_stage="at_risk",
    ),
    facts(
        3,
        registered_at=NOW - 30 * DAY + US,
        last_order_at=NOW - 91 * DAY,
        email="",
        city="ab\n",
        province_code="aB",
        account_state="enabled",
        tags=("Wholesale",),
        total_spent=D("1000.0000011"),
        average_order_value=D("0"),
        product_type_counts={"Hats": 4},
        lifecycle_stage="churned",
        accepts_sms_marketing=True,
    ),
    facts(
        4,
        registered_at=NOW - 2 * DAY - timedelta(hours=12),
        last_order_at=NOW,
        city="a.b",
        country_code="us",
        orders_count=1,
        refunds_count=1,
        refunded_total=D("0.5"),
        total_spent=D("49.999999"),
        largest_order_value=D("500"),
        vendor_counts={"acme": 2, "ACME": 1},
        rfm_segment="champions",
    ),
    facts(
        5,
        email="Ünal@example.com",
        city="İstanbul",
        province_code="ǅ",
        country_code="TR",
        tags=("straße", "ΣΊΣΥΦΟΣ", "服装"),
        product_type_counts={"服装": 1, "STRASSE": 2, "straße": 1},
        vendor_counts={"ﬃ": 1, "FFI": 2},
        top_product_type="STRASSE",
        account_state="Ꭰꭰ",
    ),
]


def variants(text: str) -> list[str]:
    return [
        text,
        text.upper(),
        text.lower(),
        text.casefold(),
        text.swapcase(),
        text[:1],
        text[1:],
        text[-1:],
    ]


def numbers(values: Iterable[object]) -> list[Decimal]:
    bases = {to_decimal(v) for v in values if v is not None} | {D(0), D(3)}
    return sorted({base + offset for base in bases for offset in OFFSETS})


def candidates(batch: Sequence[CustomerFacts], name: str, input_type: str) -> list[Any]:
    """Rule values near what the batch's facts hold for this variable."""
    values = [getattr(SegmentVariables(f, NOW), name)() for f in batch]
    if input_type == FIELD_NO_INPUT:
        return [None]
    if input_type == FIELD_NUMERIC:
        return list(numbers(values))
    if input_type == FIELD_NUMERIC_RANGE:
        bounds = numbers(values)
        return [[a, b] for a, b in zip(bounds, bounds[1:], strict=False)] + [[v, v] for v in bounds]
    if input_type == FIELD_TEXT:
        texts = {v or "" for v in values} | set(TEXTS)
        return sorted({variant for text in texts for variant in variants(text)})
    if input_type in (FIELD_SELECT, FIELD_SELECT_MULTIPLE, FIELD_KEY_COUNT):
        names = {n for v in values for n in v} | set(NAMES) | set(KEYS)
        found = sorted({variant for n in names for variant in variants(n) if variant})
        if input_type == FIELD_SELECT:
            return found
        if input_type == FIELD_KEY_COUNT:
            return [{"key": key, "count": count} for key in found for count in range(4)]
        return [[n] for n in found] + [found[i : i + 3] for i in range(0, len(found), 2)]
    raise AssertionError(input_type)


def when(name: str, operator: str, value: Any) -> dict[str, Any]:
    return {"name": name, "operator": operator, "value": value}


async def store(db: asyncpg.Connection, shop_id: int, batch: Sequence[CustomerFacts]) -> None:
    await db.execute("DELETE FROM customers WHERE shop_id = $1", shop_id)
    columns = ", ".join(FACT_COLUMNS)
    placeholders = ", ".join(f"${i}" for i in range(1, len(FACT_COLUMNS) + 1))
    rows = [facts_to_row(f) for f in batch]
    await db.executemany(
        f"INSERT INTO customers ({columns}) VALUES ({placeholders})",
        [[row[c] for c in FACT_COLUMNS] for row in rows],
    )


async def sql_results(
    db: asyncpg.Connection, shop_id: int, rules: Sequence[dict[str, Any]]
) -> dict[int, list[bool]]:
    """customer_id -> each rule's SQL result, evaluated as selected columns in one query."""
    params: list[object] = []
    selected = []
    for index, rule in enumerate(rules):
        where, values = compile_where(rule, now_param=2, first_param=3 + len(params))
        params += values
        selected.append(f"({where}) AS r{index}")
    query = f"SELECT customer_id, {', '.join(selected)} FROM customers WHERE shop_id = $1"
    results = {}
    for row in await db.fetch(query, shop_id, NOW, *params):
        matched = [row[f"r{i}"] for i in range(len(rules))]
        assert None not in matched, "a SQL condition evaluated to NULL"
        results[row["customer_id"]] = matched
    return results


async def assert_agree(
    db: asyncpg.Connection, shop_id: int, batch: Sequence[CustomerFacts], rules: list[Any]
) -> None:
    batch = [dataclasses.replace(f, shop_id=shop_id) for f in batch]
    await store(db, shop_id, batch)
    in_sql = await sql_results(db, shop_id, rules)
    for customer in batch:
        variables = SegmentVariables(customer, NOW)
        for index, rule in enumerate(rules):
            engine = bool(check_conditions_recursively(rule, variables))
            compiled = compile_conditions(rule)(customer, NOW)
            sql = in_sql[customer.customer_id][index]
            assert engine == compiled == sql, (customer, rule, engine, compiled, sql)


async def test_every_operator_agrees_on_boundary_facts(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    for name in VARIABLES:
        rules = []
        for variable, operator, input_type in PAIRS:
            if variable != name:
                continue
            values = (
                REGEXES if operator == "matches_regex" else candidates(CORPUS, name, input_type)
            )
            rules += [when(name, operator, value) for value in values]
        for rule in rules:
            validate_conditions(rule)
        await assert_agree(db, shop.shop_id, CORPUS, rules)


# (stored, in the rule, equal ignoring case?): full Unicode case folding, no normalisation and
# no language-specific (Turkish) rules.
FOLDING = [
    ("İstanbul", "i̇stanbul", True),  # İ folds to i + combining dot above
    ("İstanbul", "istanbul", False),  # ... not to a plain i
    ("STRASSE", "straße", True),  # ß folds to ss
    ("ẞ", "ss", True),
    ("ΣΊΣΥΦΟΣ", "σίσυφος", True),  # final sigma folds as σ
    ("服装", "服装", True),
    ("服装", "服飾", False),
    ("ǅ", "ǆ", True),  # titlecase digraph
    ("ﬃ", "FFI", True),  # ligature
    ("K", "k", True),  # Kelvin sign
    ("Ꭰꭰ", "ꭰᎠ", True),  # Cherokee folds to upper case
    ("café", "cafe\u0301", False),  # NFC and NFD stay different
]


async def test_case_insensitive_operators_fold_full_unicode_case(
    db: asyncpg.Connection, shop: ShopCredentials
) -> None:
    for index, (stored, wanted, equal) in enumerate(FOLDING):
        customer = facts(index + 1, city=stored, tags=(stored,), product_type_counts={stored: 2})
        expected = [
            (when("city", "equal_to_case_insensitive", wanted), equal),
            (when("tags", "contains", wanted), equal),
            (when("tags", "does_not_contain", wanted), not equal),
            (when("tags", "contains_all", [wanted]), equal),
            (when("tags", "shares_at_least_one_element_with", [wanted]), equal),
            (when("tags", "shares_no_elements_with", [wanted]), not equal),
            (when("product_types_bought", "contains", wanted), equal),
            (
                when("product_type_order_counts", "count_at_least", {"key": wanted, "count": 2}),
                equal,
            ),
            (
                when("product_type_order_counts", "count_less_than", {"key": wanted, "count": 2}),
                not equal,
            ),
        ]
        rules = [rule for rule, _ in expected]
        customer = dataclasses.replace(customer, shop_id=shop.shop_id)
        await store(db, shop.shop_id, [customer])
        in_sql = (await sql_results(db, shop.shop_id, rules))[customer.customer_id]
        variables = SegmentVariables(customer, NOW)
        for (rule, result), sql in zip(expected, in_sql, strict=True):
            engine = bool(check_conditions_recursively(rule, variables))
            compiled = compile_conditions(rule)(customer, NOW)
            assert (engine, compiled, sql) == (result, result, result), (stored, rule)


# Random facts: boundary values (EPSILON, exact day boundaries, microseconds, None, empty).
MONEY = st.one_of(
    st.sampled_from([D(0), D(50), D(200), D("199.999999"), D("200.000001"), D("200.0000005")]),
    st.decimals(min_value=0, max_value=5000, places=2),
)
COUNTS = st.integers(0, 6)
# Mostly exactly on a day boundary or a microsecond either side of one.
MOMENTS = st.builds(
    lambda days, extra: NOW - days * DAY + extra,
    st.integers(-2, 400),
    st.one_of(
        st.just(timedelta(0)),
        st.just(timedelta(0)),
        st.sampled_from([US, -US]),
        st.integers(0, 86_400_000_000 - 1).map(lambda us: timedelta(microseconds=us)),
    ),
)


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """None about a quarter of the time."""
    return st.one_of(st.none(), values, values, values)


# Any code point but surrogates and NUL, and often one of the capitals Unicode added after
# Python 3.11's version 14.0 (PostgreSQL 18 folds them; fold() takes them from a table).
ASSIGNED = st.one_of(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    st.sampled_from(["\u1c89", "\ua7cb", "\ua7dc", "\U00010d50", "\U00010d65"]),
)
UNICODE = st.text(ASSIGNED, max_size=6)
NAME = st.one_of(st.sampled_from(NAMES), UNICODE.filter(bool))
TEXT = maybe(st.one_of(st.sampled_from(TEXTS), UNICODE))
COUNT_MAPS = st.dictionaries(
    st.one_of(st.sampled_from(KEYS), UNICODE.filter(bool)), st.integers(0, 4), max_size=4
)
FACTS = st.builds(
    facts,
    customer_id=st.just(0),
    registered_at=maybe(MOMENTS),
    email=TEXT,
    accepts_email_marketing=st.booleans(),
    accepts_sms_marketing=st.booleans(),
    country_code=TEXT,
    province_code=TEXT,
    city=TEXT,
    birthday_month=maybe(st.integers(1, 12)),
    tags=st.lists(NAME, max_size=3).map(tuple),
    account_state=TEXT,
    orders_count=COUNTS,
    total_spent=MONEY,
    average_order_value=maybe(MONEY),
    largest_order_value=maybe(MONEY),
    first_order_at=maybe(MOMENTS),
    last_order_at=maybe(MOMENTS),
    refunds_count=COUNTS,
    refunded_total=MONEY,
    cancelled_orders_count=COUNTS,
    orders_30d=COUNTS,
    orders_90d=COUNTS,
    orders_365d=COUNTS,
    spent_30d=MONEY,
    spent_90d=MONEY,
    spent_365d=MONEY,
    product_type_counts=COUNT_MAPS,
    vendor_counts=COUNT_MAPS,
    product_counts=COUNT_MAPS,
    top_product_type=TEXT,
    abandoned_checkouts=COUNTS,
    last_abandoned_checkout_at=maybe(MOMENTS),
    page_views=COUNTS,
    product_views=COUNTS,
    added_to_cart=COUNTS,
    emails_opened=COUNTS,
    emails_clicked=COUNTS,
    reviews_written=COUNTS,
    referrals=COUNTS,
    last_engaged_at=maybe(MOMENTS),
    rfm_recency=maybe(st.integers(1, 5)),
    rfm_frequency=maybe(st.integers(1, 5)),
    rfm_monetary=maybe(st.integers(1, 5)),
    rfm_segment=maybe(st.sampled_from(RFM_SEGMENTS)),
    lifecycle_stage=st.sampled_from(LIFECYCLE_STAGES),
)

# Random patterns from the portable subset.
_ATOM = st.one_of(
    st.builds(
        lambda atom, quantifier: atom + quantifier,
        st.sampled_from(["a", "b", "A", " ", ".", r"\.", "[ab]", "[^a]", "[a-c]", "[b-]"]),
        st.sampled_from(["", "", "", "*", "+", "?", "{2}", "{1,}", "{0,2}"]),
    ),
    st.sampled_from(["^", "$"]),
)


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    sequence = st.lists(inner, min_size=1, max_size=3).map("".join)
    alternation = st.lists(sequence, min_size=1, max_size=2).map("|".join)
    group = st.builds(
        lambda body, q: f"({body}){q}", alternation, st.sampled_from(["", "*", "+", "?"])
    )
    return st.one_of(sequence, alternation, group)


PATTERNS = st.one_of(st.sampled_from(REGEXES), st.recursive(_ATOM, _extend, max_leaves=6))


def conditions(batch: Sequence[CustomerFacts]) -> st.SearchStrategy[dict[str, Any]]:
    def leaf(pair: tuple[str, str, str]) -> st.SearchStrategy[dict[str, Any]]:
        name, operator, input_type = pair
        values = (
            PATTERNS
            if operator == "matches_regex"
            else st.sampled_from(candidates(batch, name, input_type))
        )
        return values.map(lambda value: when(name, operator, value))

    # Operator first, then a variable that has it: rare operators get drawn as often as common.
    operators = sorted({operator for _, operator, _ in PAIRS})
    pairs = st.sampled_from(operators).flatmap(
        lambda operator: st.sampled_from([p for p in PAIRS if p[1] == operator])
    )
    leaves = pairs.flatmap(leaf)

    def group(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.builds(
            lambda key, items: {key: items},
            st.sampled_from(["all", "any"]),
            st.lists(children, min_size=1, max_size=3),
        )

    # Mostly one condition or a flat group, where each condition decides the result and
    # boundary mistakes show; also all/any nested up to three deep.
    single = st.builds(lambda key, leaf: {key: [leaf]}, st.sampled_from(["all", "any"]), leaves)
    nested = group(leaves | group(leaves | group(leaves)))
    return st.one_of(single, single, group(leaves), nested)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    # Shrinking replays against the database for minutes; the assertion names the customer
    # and rule that disagree already.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
async def test_random_rules_agree_on_random_facts(
    db: asyncpg.Connection, shop: ShopCredentials, data: st.DataObject
) -> None:
    batch = data.draw(st.lists(FACTS, min_size=1, max_size=10))
    batch = [dataclasses.replace(f, customer_id=i) for i, f in enumerate(batch, start=1)]
    rules = data.draw(st.lists(conditions(batch), min_size=10, max_size=20))
    for rule in rules:
        validate_conditions(rule)
    await assert_agree(db, shop.shop_id, batch, rules)
