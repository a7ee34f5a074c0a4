"""fold() and sql_fold() on a real PostgreSQL: the same folding of every code point.

Case folding maps each code point on its own (no context, unlike lowercasing's final sigma), so
agreeing on every single code point means agreeing on every string made of them.
"""

import unicodedata

import asyncpg

from services.segmenter.domain.rules.folding import fold, sql_fold

# Every code point but the surrogates and NUL, which PostgreSQL text cannot hold: those
# Python 3.11's Unicode (14.0) does not know included, since PostgreSQL 18's (16.0) does.
ASSIGNED = [chr(point) for point in range(1, 0x110000) if unicodedata.category(chr(point)) != "Cs"]


async def test_python_and_postgresql_fold_every_assigned_code_point_alike(
    db: asyncpg.Connection,
) -> None:
    rows = await db.fetch(
        f"SELECT {sql_fold('u.c')} AS folded FROM unnest($1::text[]) WITH ORDINALITY AS u(c, i) "
        "ORDER BY u.i",
        ASSIGNED,
    )
    assert len(rows) == len(ASSIGNED) > 1_000_000
    differ = [
        (f"U+{ord(c):04X}", fold(c), row["folded"])
        for c, row in zip(ASSIGNED, rows, strict=True)
        if fold(c) != row["folded"]
    ]
    assert differ == []


async def test_the_collation_of_the_text_does_not_matter(db: asyncpg.Connection) -> None:
    # lower() follows the text's collation, by default the database's (libc C.UTF-8 lowers İ
    # to a plain i); sql_fold() names its own, so any locale gives the same result.
    sample = "İSTANBUL ΣΊΣΥΦΟΣ STRASSE ǅ"
    folded_in_c = sql_fold('$1::text COLLATE "C"')
    assert await db.fetchval(f"SELECT {folded_in_c}", sample) == fold(sample)
