"""Which tags to write to a Shopify customer: a pure function of their memberships and the
ledger of what segflow wrote (no HTTP, no database).

A customer's managed tags follow their memberships: the `add_tag` actions of the segments
they are in, less the tags any of those segments' `remove_tag` actions name. The ledger holds
one entry per tag segflow has dealt with for the customer (by lower-cased tag, since Shopify
compares tags without case), in one of these states:

- `adding`: we asked (or are about to ask) Shopify to add it; `added` once Shopify said yes;
- `removing`: we asked (or are about to ask) Shopify to remove it; `removed` once Shopify
  said yes, until the webhook of the removal comes back and the entry goes (until then the
  segmenter still knows the tag for ours, whatever order the webhooks arrive in);
- `merchant`: the customer already had the tag when we first wanted it; it is the merchant's,
  so we never claim it and never remove it;
- `overridden`: we had added it and someone removed it by hand; with the shop's
  `respect_manual_removals` (the default) we do not put it back for that customer.

Re-sending an add or a remove is safe (Shopify's tag mutations are idempotent), so an entry
left `adding` or `removing` by a crash is simply sent again.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from services.common.shopify import tag_key

State = Literal["adding", "added", "removing", "removed", "merchant", "overridden"]
# The entries whose tag segflow put on the customer (or is putting on, or taking off): the
# segmenter leaves these out of the merchant's tags fact.
OURS: frozenset[State] = frozenset({"adding", "added", "removing", "removed"})


@dataclass(frozen=True)
class Entry:
    """One ledger entry: the tag as segflow writes it, and where it stands."""

    tag: str
    state: State
    changed_at: datetime


def wanted_tags(actions_of_segments: Iterable[Sequence[Mapping[str, Any]]]) -> dict[str, str]:
    """Tag key → spelling, from the actions of the segments a customer is in: every `add_tag`
    tag, less the tags of any `remove_tag` (the first spelling met wins, in the given order)."""
    added: dict[str, str] = {}
    removed: set[str] = set()
    for actions in actions_of_segments:
        for action in actions:
            tag = action.get("params", {}).get("tag")
            if not isinstance(tag, str) or not tag.strip():
                continue
            if action.get("name") == "add_tag":
                added.setdefault(tag_key(tag), tag.strip())
            elif action.get("name") == "remove_tag":
                removed.add(tag_key(tag))
    return {key: tag for key, tag in added.items() if key not in removed}


@dataclass(frozen=True)
class Plan:
    """What to send for one customer (one tagsAdd, one tagsRemove at most) and the ledger
    entries to write first (None: drop the entry)."""

    add: tuple[str, ...]
    remove: tuple[str, ...]
    entries: Mapping[str, Entry | None]

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove and not self.entries


def needs_shopify_tags(wanted: Mapping[str, str], ledger: Mapping[str, Entry]) -> bool:
    """Whether the plan needs the customer's tags on Shopify: a wanted tag we have never dealt
    with may be the merchant's already."""
    return any(key not in ledger or ledger[key].state in ("removing", "removed") for key in wanted)


def plan(
    wanted: Mapping[str, str],
    ledger: Mapping[str, Entry],
    on_shopify: Iterable[str] | None,
    now: datetime,
) -> Plan:
    """The writes that bring the customer's managed tags to `wanted`.

    `on_shopify` is the customer's current tags on Shopify; it may be None only when
    `needs_shopify_tags` is False.
    """
    present = {tag_key(tag) for tag in on_shopify} if on_shopify is not None else None
    add: list[str] = []
    remove: list[str] = []
    entries: dict[str, Entry | None] = {}
    for key, tag in sorted(wanted.items()):
        entry = ledger.get(key)
        if entry is None:
            if present is None:
                raise ValueError("the customer's Shopify tags are needed for a new tag")
            if key in present:
                entries[key] = Entry(tag, "merchant", now)
                continue
            add.append(tag)
            entries[key] = Entry(tag, "adding", now)
        elif entry.state == "adding":
            add.append(entry.tag)
        elif entry.state in ("removing", "removed"):
            if present is not None and key in present and entry.state == "removed":
                # Put back by someone else since we took it off: the merchant's now.
                entries[key] = Entry(entry.tag, "merchant", now)
                continue
            add.append(entry.tag)
            entries[key] = Entry(entry.tag, "adding", now)
    for key, entry in sorted(ledger.items()):
        if key in wanted:
            continue
        if entry.state in ("adding", "added"):
            remove.append(entry.tag)
            entries[key] = Entry(entry.tag, "removing", now)
        elif entry.state == "removing":
            remove.append(entry.tag)
        elif entry.state == "merchant":
            # Not ours, and no longer wanted: forget it, so a later entry looks again.
            entries[key] = None
    return Plan(tuple(add), tuple(remove), entries)


def applied(plan: Plan, ledger: Mapping[str, Entry], now: datetime) -> dict[str, Entry | None]:
    """The ledger entries to write once Shopify accepted the plan's writes."""
    done: dict[str, Entry | None] = {}
    merged = {**ledger, **{k: v for k, v in plan.entries.items() if v is not None}}
    for tag in plan.add:
        key = tag_key(tag)
        done[key] = Entry(merged[key].tag, "added", now)
    for tag in plan.remove:
        key = tag_key(tag)
        done[key] = Entry(merged[key].tag, "removed", now)
    return done


def on_echo(
    ledger: Mapping[str, Entry],
    added: Iterable[str],
    removed: Iterable[str],
    occurred_at: datetime,
    respect_manual_removals: bool,
) -> tuple[dict[str, Entry | None], bool]:
    """Ledger entries to write for a tags webhook (ours coming back, or someone else's
    change), and whether the customer's tags need another look.

    An echo older than an entry's last change says nothing about it (webhooks come late and
    out of order). Tags without an entry are the merchant's: nothing to do.
    """
    entries: dict[str, Entry | None] = {}
    recheck = False
    for tag in added:
        key = tag_key(tag)
        entry = ledger.get(key)
        if entry is None or occurred_at < entry.changed_at:
            continue
        if entry.state == "adding":
            entries[key] = Entry(entry.tag, "added", occurred_at)
        elif entry.state in ("overridden", "removed"):
            # Put back by hand after we or someone took it off: the merchant's tag now.
            entries[key] = Entry(entry.tag, "merchant", occurred_at)
    for tag in removed:
        key = tag_key(tag)
        entry = ledger.get(key)
        if entry is None or occurred_at < entry.changed_at:
            continue
        if entry.state in ("removing", "removed"):
            entries[key] = None
        elif entry.state == "added":
            if respect_manual_removals:
                entries[key] = Entry(entry.tag, "overridden", occurred_at)
            else:
                entries[key] = Entry(entry.tag, "adding", occurred_at)
                recheck = True
        elif entry.state == "merchant":
            # The merchant took off a tag of theirs that a segment wants: with overrides
            # respected it stays off (and is ours to leave alone), else it goes back now.
            if respect_manual_removals:
                entries[key] = Entry(entry.tag, "overridden", occurred_at)
            else:
                entries[key] = None
                recheck = True
    return entries, recheck
