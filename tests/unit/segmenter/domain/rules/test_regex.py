"""The portable regular-expression subset and its PostgreSQL translation (agreement with
PostgreSQL itself is checked against a real server in the integration tests)."""

import re
import subprocess
import sys
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.segmenter.domain.rules.regex import (
    MAX_LENGTH,
    RegexError,
    compile_search,
    to_postgres,
    to_re2,
)


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


@pytest.mark.parametrize(
    ("pattern", "re2_form"),
    [
        ("abc", "abc"),
        ("^a|b$", r"^a|b(?:\n?\z)"),
        ("a.c", r"a[^\n]c"),
        ("(a+)+$", r"(a+)+(?:\n?\z)"),
    ],
)
def test_portable_patterns_translate_for_re2(pattern: str, re2_form: str) -> None:
    assert to_re2(pattern) == re2_form


_ATOMS = st.sampled_from(["a", "b", "é", ".", "[ab]", "[^a]", r"\.", r"\$", "^", "$"])
_QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,}", "{0,3}"])


def _piece(atom: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    # An anchor cannot be repeated; anything else may take a quantifier.
    return st.tuples(atom, _QUANTIFIERS).map(lambda p: p[0] if p[0] in ("^", "$") else p[0] + p[1])


_BRANCH = st.lists(_piece(_ATOMS), min_size=1, max_size=4).map("".join)
_GROUPED = st.lists(_BRANCH, min_size=1, max_size=3).map(lambda b: "(" + "|".join(b) + ")")
PATTERNS = st.lists(st.one_of(_piece(_ATOMS), _piece(_GROUPED)), min_size=1, max_size=4).map(
    "".join
)
TEXTS = st.text(alphabet="ab.é$\n", max_size=12)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(pattern=PATTERNS, text=TEXTS)
def test_the_linear_engine_finds_what_python_re_finds(pattern: str, text: str) -> None:
    try:
        to_postgres(pattern)
    except RegexError:
        return  # outside the subset: refused before any engine sees it
    assert compile_search(pattern)(text) == (re.search(pattern, text) is not None)


# Under Python's re this takes longer than the age of the universe (4x per 2 characters).
CATASTROPHIC = """
from datetime import UTC, datetime
from business_rules.engine import run_all
from services.segmenter.domain.facts import CustomerFacts
from services.segmenter.domain.rules.compile_py import compile_conditions
from services.segmenter.domain.rules.variables import SegmentActions, SegmentVariables
rule = {"all": [{"name": "email", "operator": "matches_regex", "value": "^(a+)+$"}]}
now = datetime(2026, 1, 1, tzinfo=UTC)
customer = CustomerFacts(shop_id=1, customer_id=1, email="a" * 5000 + "!@example.com")
assert compile_conditions(rule)(customer, now) is False
assert run_all([{"conditions": rule, "actions": []}], SegmentVariables(customer, now),
    SegmentActions()) is False
print("finished")
"""


def test_a_catastrophic_pattern_finishes_in_both_evaluators() -> None:
    # A child process, so a backtracking engine is killed at the deadline, not left spinning.
    done = subprocess.run(
        [sys.executable, "-c", CATASTROPHIC], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "finished"


def test_a_pattern_re2_cannot_hold_is_refused_as_outside_the_subset() -> None:
    # Portable by syntax, but its program is too big: refused, never compiled per event.
    with pytest.raises(RegexError, match="RE2"):
        compile_search("((a{255}){255}){255}")
