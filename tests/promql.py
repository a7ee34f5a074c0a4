"""The metric names a PromQL expression reads, for checking dashboards and alerts against what
the roles export (a small reader for the expressions segflow writes, not a PromQL parser)."""

import re

from prometheus_client.parser import text_string_to_metric_families

# Label matchers, range and subquery selectors, and the label lists of by/without/on/ignoring/
# group_left/group_right: none of them names a metric.
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
# What a family of each type is exposed as (the text format's sample names).
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` selects: identifiers left once functions (a name followed by
    `(`), label matchers, ranges, label lists, strings, numbers and keywords are taken out."""
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        following = text[match.end() :].lstrip()
        word = match.group()
        if following.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # the exponent or unit of a number (1e3, 5m)
        names.add(word)
    return names


def exported_names(exposition: str) -> set[str]:
    """The sample names a /metrics answer exposes, families with no sample yet included (a
    labelled metric nobody has used still has its HELP and TYPE)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        suffixes = _SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
        names.update(sample.name for sample in family.samples)
    return names
