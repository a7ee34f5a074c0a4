"""Case-insensitive text: the one folding the engine, the compiled Python and the SQL share.

Two texts are equal ignoring case when their full Unicode case foldings (CaseFolding.txt,
statuses C and F) are equal, with no normalisation and no language-specific rules:
"STRASSE" = "straße", "ΣΊΣΥΦΟΣ" = "σίσυφος", "İstanbul" = "i̇stanbul" (İ folds to i plus a
combining dot, so not to "istanbul"), and NFC "café" differs from NFD "café".

Python's str.casefold() and PostgreSQL's casefold() under the builtin pg_unicode_fast collation
(PostgreSQL 18 and later) both implement it, whatever the database's locale; str.lower() and
lower() agree on ASCII only. Their Unicode versions differ (Python 3.11: 14.0, PostgreSQL 18:
16.0). The foldings Unicode added after 14.0 (new capital letters; Python 3.11 leaves them
as they are) are applied here from a table, so fold() and PostgreSQL 18's casefold() agree on
every code point (tests/integration/segmenter/rules/test_folding.py checks each one; a newer
PostgreSQL's Unicode may add rows to the table). Migrations refuse an older server
(services/common/db.py).
"""

# Code point → folding, for the capital letters Unicode 15.0 and 16.0 added, read off
# PostgreSQL 18.6's casefold() (Unicode 16.0). Python 3.11 leaves each unchanged.
_AFTER_UNICODE_14 = {
    0x1C89: "\u1c8a",
    0xA7CB: "\u0264",
    0xA7CC: "\ua7cd",
    0xA7DA: "\ua7db",
    0xA7DC: "\u019b",
    # Garay capital letters (U+10D50–U+10D65) fold to their small letters 0x20 above.
    **{point: chr(point + 0x20) for point in range(0x10D50, 0x10D66)},
}


def fold(text: str) -> str:
    """`text` case-folded, as every case-insensitive rule operator compares it."""
    return text.casefold().translate(_AFTER_UNICODE_14)


def sql_fold(expression: str) -> str:
    """SQL computing fold() of a text expression (PostgreSQL 18 or later, a UTF-8 database)."""
    return f"casefold(({expression}) COLLATE pg_unicode_fast)"
