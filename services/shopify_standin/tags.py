"""Shopify's tag semantics, as pure functions: tags compare case-insensitively, the spelling
already on the customer wins, a comma inside a value separates tags, the list reads sorted."""

from collections.abc import Iterable, Sequence

MAX_TAGS = 250
MAX_TAG_LENGTH = 255
TOO_LONG = f"Tags is too long (maximum is {MAX_TAG_LENGTH} characters)"
TOO_MANY = f"Tags cannot be more than {MAX_TAGS}"


def split_tags(values: Iterable[str]) -> list[str]:
    """The tags named by `values`: each split on commas and stripped, blanks dropped, the first
    spelling of tags equal but for case kept (Shopify accepts "a, b" as two tags)."""
    seen: set[str] = set()
    tags: list[str] = []
    for value in values:
        for part in value.split(","):
            tag = part.strip()
            if tag and tag.casefold() not in seen:
                seen.add(tag.casefold())
                tags.append(tag)
    return tags


def sorted_tags(tags: Iterable[str]) -> list[str]:
    """Tags in the order Shopify lists them: alphabetical, ignoring case."""
    return sorted(tags, key=lambda tag: (tag.casefold(), tag))


def add_tags(existing: Sequence[str], new: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the customer's tags after adding `new`, the tags that were not there before)."""
    present = {tag.casefold() for tag in existing}
    added = [tag for tag in new if tag.casefold() not in present]
    return sorted_tags([*existing, *added]), added


def remove_tags(existing: Sequence[str], gone: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the customer's tags after removing `gone`, the removed ones in the customer's spelling)."""
    wanted = {tag.casefold() for tag in gone}
    removed = [tag for tag in existing if tag.casefold() in wanted]
    kept = [tag for tag in existing if tag.casefold() not in wanted]
    return sorted_tags(kept), removed


def tag_problems(named: Sequence[str], result: Sequence[str]) -> list[str]:
    """Shopify's messages for a tag over 255 characters and for more than 250 tags."""
    problems = []
    if any(len(tag) > MAX_TAG_LENGTH for tag in named):
        problems.append(TOO_LONG)
    if len(result) > MAX_TAGS:
        problems.append(TOO_MANY)
    return problems
