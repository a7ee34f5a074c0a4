"""Building the bulk variables file and reading the result file, line by line."""

import orjson

from services.tagger.shopify.bulk import build_jsonl, parse_result


def test_the_variables_file_has_one_line_per_customer() -> None:
    body = build_jsonl([(1, ["a"]), (22, ["b", "c"])])
    assert [orjson.loads(line) for line in body.splitlines()] == [
        {"id": "gid://shopify/Customer/1", "tags": ["a"]},
        {"id": "gid://shopify/Customer/22", "tags": ["b", "c"]},
    ]


def test_each_line_is_applied_refused_failed_or_missing() -> None:
    lines = [(1, ["a"]), (2, ["a"]), (3, ["a"]), (4, ["a"])]
    rows = [
        {"data": {"tagsAdd": {"node": {"id": "x"}, "userErrors": []}}, "__lineNumber": 0},
        {
            "data": {
                "tagsAdd": {"node": None, "userErrors": [{"message": "Customer does not exist"}]}
            },
            "__lineNumber": 1,
        },
        {"errors": [{"message": "Internal error"}], "__lineNumber": 3},
    ]
    body = b"\n".join(orjson.dumps(row) for row in rows) + b"\n"
    applied, failures = parse_result(body, lines, "add")
    assert applied == 1
    assert [(f.line_number, f.customer_id, f.retryable) for f in failures] == [
        (1, 2, False),
        (2, 3, True),  # no result line at all
        (3, 4, True),
    ]
    assert failures[0].messages == ("Customer does not exist",)
    assert failures[1].messages == ("no result line",)


def test_a_removal_reads_its_own_field() -> None:
    row = {"data": {"tagsRemove": {"node": {"id": "x"}, "userErrors": []}}, "__lineNumber": 0}
    assert parse_result(orjson.dumps(row), [(9, ["a"])], "remove") == (1, ())
