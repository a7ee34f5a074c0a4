"""The portable regular-expression subset and its PostgreSQL translation (agreement with
PostgreSQL itself is checked against a real server in the integration tests)."""

import re
import warnings

import pytest

from services.segmenter.domain.rules.regex import MAX_LENGTH, RegexError, to_postgres


@pytest.mark.parametrize(
    ("pattern", "postgres"),
    [
        ("abc", "abc"),
        ("^a|b$", r"^a|b(?=\n?$)"),
        ("a.c", r"a[^\n]c"),
        ("[^.]", "[^.]"),
        ("(ab|c)+d?e*", "(ab|c)+d?e*"),
        ("x{2}y{1,}z{0,255}", "x{2}y{1,}z{0,255}"),
        (r"\.\$\(\)\[\]\{\}\*\+\?\|\\\-\^", r"\.\$\(\)\[\]\{\}\*\+\?\|\\\-\^"),
        ("[a-zA-Z0-9_ -]", "[a-zA-Z0-9_ -]"),
        ("[-]", "[-]"),
        ("café", "café"),
        ("(^)*a", "(^)*a"),
    ],
)
def test_portable_patterns_translate(pattern: str, postgres: str) -> None:
    assert to_postgres(pattern) == postgres
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Python warns on some set syntax it may change
        re.compile(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "a|",
        "|a",
        "()",
        "(a",
        "a)",
        "*a",
        "^*",
        "$+",
        "a**",
        "a+?",
        "a{2}{3}",
        "a{,3}",
        "a{3,2}",
        "a{256}",
        "a{1,x}",
        "a{²}",
        "a{2",
        "a}",
        "]",
        r"\d",
        r"\b",
        "\\",
        "a\nb",
        "a\tb",
        "(?i)a",
        "(?=a)",
        "[]",
        "[^]",
        "[a",
        "[[:alpha:]]",
        "[a-]b-c]",
        "[--a]",
        "[a-Z]",
        "[z-a]",
        "[0-z]",
        r"[\d]",
        "[a&&b]",
        "[a~~b]",
        "[a||b]",
        "[a^]",
        "a" * (MAX_LENGTH + 1),
    ],
)
def test_patterns_outside_the_subset_are_rejected(pattern: str) -> None:
    with pytest.raises(RegexError):
        to_postgres(pattern)
