"""Telling CSV from JSONL: by extension, else by the first character."""

from pathlib import Path

import pytest

from services.segmenter.importer.runner import detect_kind


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("customers_export.csv", '{"id": 1}\n', "csv"),
        ("bulk.jsonl", "Customer ID,Email\n", "jsonl"),
        ("bulk.ndjson", "", "jsonl"),
        ("export", '\ufeff  {"id": "gid://shopify/Order/1"}\n', "jsonl"),
        ("export.txt", "Customer ID,Email\n'1,a@example.com\n", "csv"),
    ],
)
def test_detect_kind(tmp_path: Path, name: str, text: str, kind: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert detect_kind(path) == kind
