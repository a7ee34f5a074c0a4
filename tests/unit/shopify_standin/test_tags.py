"""Shopify's tag rules as the stand-in applies them."""

from services.shopify_standin.tags import (
    MAX_TAGS,
    TOO_LONG,
    TOO_MANY,
    add_tags,
    remove_tags,
    split_tags,
    tag_problems,
)


def test_commas_split_values_and_case_duplicates_keep_the_first_spelling() -> None:
    assert split_tags(["a, b", " B ", "", "c,,", "A"]) == ["a", "b", "c"]


def test_adding_keeps_the_existing_spelling_and_reports_only_new_tags() -> None:
    result, added = add_tags(["Red", "vip"], ["red", "Blue"])
    assert result == ["Blue", "Red", "vip"]
    assert added == ["Blue"]
    assert add_tags(["x"], ["X"]) == (["x"], [])


def test_removing_matches_any_case_and_reports_the_customers_spelling() -> None:
    result, removed = remove_tags(["Red", "vip", "Blue"], ["RED", "missing"])
    assert result == ["Blue", "vip"]
    assert removed == ["Red"]


def test_limits() -> None:
    assert tag_problems(["x" * 255], ["x" * 255]) == []
    assert tag_problems(["x" * 256], ["x" * 256]) == [TOO_LONG]
    assert tag_problems([], [f"t{n}" for n in range(MAX_TAGS)]) == []
    assert tag_problems([], [f"t{n}" for n in range(MAX_TAGS + 1)]) == [TOO_MANY]
