"""The tag plan: managed tags follow memberships, never touching the merchant's own."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.shopify import tag_key
from services.tagger.tags import (
    OURS,
    Entry,
    applied,
    needs_shopify_tags,
    on_echo,
    plan,
    wanted_tags,
)

T0 = datetime(2026, 6, 1, tzinfo=UTC)
VIP = [{"name": "add_tag", "params": {"tag": "VIP"}}]


def test_wanted_tags_are_the_add_tags_less_any_remove_tag() -> None:
    repeat = [
        {"name": "add_tag", "params": {"tag": "repeat"}},
        {"name": "remove_tag", "params": {"tag": "first-timer"}},
    ]
    first = [{"name": "add_tag", "params": {"tag": "First-Timer"}}]
    journey = [{"name": "enroll_journey", "params": {"journey": "welcome"}}]
    assert wanted_tags([VIP, journey]) == {"vip": "VIP"}
    assert wanted_tags([first]) == {"first-timer": "First-Timer"}
    assert wanted_tags([first, repeat]) == {"repeat": "repeat"}


def test_a_tag_the_customer_already_has_is_the_merchants() -> None:
    wanted = {"vip": "VIP"}
    assert needs_shopify_tags(wanted, {})
    first = plan(wanted, {}, ["vip", "wholesale"], T0)
    assert first.add == () and first.entries == {"vip": Entry("VIP", "merchant", T0)}
    # Leaving the segment later removes nothing: it was never ours.
    ledger = {"vip": Entry("VIP", "merchant", T0)}
    left = plan({}, ledger, None, T0)
    assert left.remove == () and left.entries == {"vip": None}


def test_entering_adds_and_leaving_removes_only_our_tag() -> None:
    entered = plan({"vip": "VIP"}, {}, ["wholesale"], T0)
    assert entered.add == ("VIP",) and entered.remove == ()
    ledger = {**applied(entered, {}, T0)}
    assert ledger == {"vip": Entry("VIP", "added", T0)}
    left = plan({}, {k: v for k, v in ledger.items() if v}, None, T0)
    assert left.remove == ("VIP",)
    assert left.entries == {"vip": Entry("VIP", "removing", T0)}
    removing = {"vip": Entry("VIP", "removing", T0)}
    # Removed stays ours (and is not sent again) until Shopify's webhook of it comes back.
    assert applied(left, removing, T0) == {"vip": Entry("VIP", "removed", T0)}
    assert plan({}, {"vip": Entry("VIP", "removed", T0)}, None, T0).empty


def test_an_interrupted_write_is_sent_again() -> None:
    """A crash after the ledger entry was written and before Shopify answered."""
    adding = {"vip": Entry("VIP", "adding", T0)}
    assert plan({"vip": "VIP"}, adding, None, T0).add == ("VIP",)
    removing = {"vip": Entry("VIP", "removing", T0)}
    assert plan({}, removing, None, T0).remove == ("VIP",)
    # Wanted again while a removal was in flight: add it back.
    back = plan({"vip": "VIP"}, removing, None, T0)
    assert back.add == ("VIP",) and back.entries["vip"] == Entry("VIP", "adding", T0)


def test_echoes_confirm_and_a_manual_removal_is_an_override() -> None:
    later = T0 + timedelta(seconds=2)
    adding = {"vip": Entry("VIP", "adding", T0)}
    entries, recheck = on_echo(adding, ["vip"], [], later, True)
    assert entries == {"vip": Entry("VIP", "added", later)} and not recheck
    added = {"vip": Entry("VIP", "added", T0)}
    entries, recheck = on_echo(added, [], ["VIP"], later, True)
    assert entries == {"vip": Entry("VIP", "overridden", later)} and not recheck
    # An overridden tag is not put back while the customer stays in the segment …
    overridden = {"vip": Entry("VIP", "overridden", later)}
    assert plan({"vip": "VIP"}, overridden, None, later).empty
    # … unless the shop turned overrides off.
    entries, recheck = on_echo(added, [], ["VIP"], later, False)
    assert entries == {"vip": Entry("VIP", "adding", later)} and recheck
    # Our own removal coming back drops the entry; a stale echo changes nothing.
    removing = {"vip": Entry("VIP", "removing", later)}
    assert on_echo(removing, [], ["vip"], later, True) == ({"vip": None}, False)
    assert on_echo(removing, [], ["vip"], T0, True) == ({}, False)
    removed = {"vip": Entry("VIP", "removed", later)}
    assert on_echo(removed, [], ["VIP"], later, True) == ({"vip": None}, False)
    assert on_echo(added, ["wholesale"], ["other"], later, True) == ({}, False)


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(
    merchant=st.sets(st.sampled_from(["VIP", "wholesale", "Churn-Risk", "b2b"]), max_size=3),
    steps=st.lists(
        st.tuples(
            st.sets(st.sampled_from(["VIP", "churn-risk", "repeat"]), max_size=3),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_tags_follow_memberships_through_crashes_and_never_lose_the_merchants(
    merchant: set[str], steps: list[tuple[set[str], bool]]
) -> None:
    """Random membership changes, some interrupted between the ledger write and Shopify's
    answer: the merchant's tags stay, ours converge to what the memberships want."""
    shopify = {tag_key(t): t for t in merchant}
    ledger: dict[str, Entry] = {}
    now = T0
    for wanted_names, crash in steps:
        now += timedelta(seconds=1)
        wanted = {tag_key(t): t for t in wanted_names}
        step = plan(wanted, ledger, list(shopify.values()), now)
        for key, entry in step.entries.items():
            if entry is None:
                ledger.pop(key, None)
            else:
                ledger[key] = entry
        if crash:
            continue  # Shopify never saw the writes; the next round sends them again
        for tag in step.add:
            shopify.setdefault(tag_key(tag), tag)
        for tag in step.remove:
            shopify.pop(tag_key(tag), None)
        for key, entry in applied(step, ledger, now).items():
            if entry is None:
                ledger.pop(key, None)
            else:
                ledger[key] = entry
        assert {tag_key(t) for t in merchant} <= shopify.keys()
        assert wanted.keys() <= shopify.keys()
        live = {k for k, e in ledger.items() if e.state in ("adding", "added", "removing")}
        assert live == wanted.keys() - {tag_key(t) for t in merchant}
        assert all(e.state in ("added", "removed") for e in ledger.values() if e.state in OURS)
