"""Case-insensitive text: the one folding the engine, the compiled Python and the SQL share.

Two texts are equal ignoring case when their full Unicode case foldings (CaseFolding.txt,
statuses C and F) are equal, with no normalisation and no language-specific rules:
"STRASSE" = "straße", "ΣΊΣΥΦΟΣ" = "σίσυφος", "İstanbul" = "i̇stanbul" (İ folds to i plus a
combining dot, so not to "istanbul"), and NFC "café" differs from NFD "café".

Python's str.casefold() and PostgreSQL's casefold() under the builtin pg_unicode_fast collation
(PostgreSQL 18 and later) both implement it, whatever the database's locale; str.lower() and
lower() agree on ASCII only. Their Unicode versions differ (Python 3.11: 14.0, PostgreSQL 18:
16.0); they fold every code point Python 3.11 knows alike (tests/integration/segmenter/rules/
test_folding.py checks each one), while code points assigned after 14.0 may fold differently.
Migrations refuse an older server (services/common/db.py).
"""


def fold(text: str) -> str:
    """`text` case-folded, as every case-insensitive rule operator compares it."""
    return text.casefold()


def sql_fold(expression: str) -> str:
    """SQL computing fold() of a text expression (PostgreSQL 18 or later, a UTF-8 database)."""
    return f"casefold(({expression}) COLLATE pg_unicode_fast)"
