"""Quiet hours in the customer's zone (DST gaps and repeats), the send cap, the birthday month."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tagger.journeys.reasons import DeferReason
from services.tagger.journeys.timing import (
    QuietHours,
    SendCap,
    cap_clear_at,
    in_month,
    is_quiet,
    month_start_from,
    quiet_hours_end,
    require_aware,
    send_time,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = QuietHours(time(21), time(9))
# Zones with DST transitions at odd hours: Santiago jumps at midnight, Lord Howe by 30 minutes,
# Tehran has none since 2022, Chatham sits at +12:45.
ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Tehran",
    "America/St_Johns",
    "Asia/Kolkata",
    "UTC",
]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_quiet_hours_spanning_midnight_end_at_the_next_local_morning() -> None:
    # 22:30 in New York (EDT, -4) is 02:30 UTC the next day.
    assert quiet_hours_end(utc(2024, 6, 11, 2, 30), NEW_YORK, NIGHT) == utc(2024, 6, 11, 13)
    # 03:00 local: the morning part, same local day.
    assert quiet_hours_end(utc(2024, 6, 11, 7), NEW_YORK, NIGHT) == utc(2024, 6, 11, 13)
    # 12:00 local: not quiet, unchanged.
    assert quiet_hours_end(utc(2024, 6, 11, 16), NEW_YORK, NIGHT) == utc(2024, 6, 11, 16)
    # The end itself is outside, the start inside.
    assert not is_quiet(utc(2024, 6, 11, 13), NEW_YORK, NIGHT)
    assert is_quiet(utc(2024, 6, 12, 1), NEW_YORK, NIGHT)


def test_quiet_hours_within_one_day() -> None:
    lunch = QuietHours(time(12), time(14))
    assert quiet_hours_end(utc(2024, 6, 11, 11), BERLIN, lunch) == utc(2024, 6, 11, 12)
    assert quiet_hours_end(utc(2024, 6, 11, 9), BERLIN, lunch) == utc(2024, 6, 11, 9)


def test_the_morning_end_follows_the_dst_change_overnight() -> None:
    # 2024-03-10: New York springs forward at 02:00. Midnight EST is 05:00 UTC, but 09:00 that
    # morning is EDT: 13:00 UTC, not 14:00.
    assert quiet_hours_end(utc(2024, 3, 10, 5), NEW_YORK, NIGHT) == utc(2024, 3, 10, 13)
    # 2024-11-03: falls back at 02:00; 09:00 EST is 14:00 UTC.
    assert quiet_hours_end(utc(2024, 11, 3, 4), NEW_YORK, NIGHT) == utc(2024, 11, 3, 14)


def test_an_end_time_skipped_by_the_dst_gap_ends_with_the_gap() -> None:
    # Quiet until 02:30, which does not exist in New York on 2024-03-10: the clock jumps from
    # 02:00 EST (07:00 UTC) to 03:00 EDT, and that is the first moment past 02:30.
    until_half_past_two = QuietHours(time(22), time(2, 30))
    assert quiet_hours_end(utc(2024, 3, 10, 6), NEW_YORK, until_half_past_two) == utc(
        2024, 3, 10, 7
    )


def test_an_end_time_in_the_repeated_hour_is_its_first_occurrence() -> None:
    # Berlin falls back at 03:00 CEST to 02:00 CET on 2024-10-27: 02:30 happens twice.
    until_half_past_two = QuietHours(time(22), time(2, 30))
    first = quiet_hours_end(utc(2024, 10, 26, 23), BERLIN, until_half_past_two)
    assert first == utc(2024, 10, 27, 0, 30)  # 02:30 CEST
    # From inside the second pass of 02:00-02:30 (CET), the second 02:30 ends it.
    second = quiet_hours_end(utc(2024, 10, 27, 1, 10), BERLIN, until_half_past_two)
    assert second == utc(2024, 10, 27, 1, 30)  # 02:30 CET


def test_santiago_midnight_gap() -> None:
    # Chile springs forward at 24:00 on 2024-09-07: 00:00-01:00 on the 8th does not exist.
    santiago = ZoneInfo("America/Santiago")
    until_half_past_midnight = QuietHours(time(20), time(0, 30))
    # 23:00 local on the 7th (-04) is 03:00 UTC on the 8th; the clock jumps at 04:00 UTC.
    end = quiet_hours_end(utc(2024, 9, 8, 3), santiago, until_half_past_midnight)
    assert end == utc(2024, 9, 8, 4)
    assert end.astimezone(santiago).time() == time(1)


@st.composite
def quiet_hours(draw: st.DrawFn) -> QuietHours:
    quarter = st.integers(min_value=0, max_value=95)
    start, end = draw(quarter), draw(quarter)
    if start == end:
        end = (end + 1) % 96
    return QuietHours(time(start // 4, start % 4 * 15), time(end // 4, end % 4 * 15))


instants = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(instants, st.sampled_from(ZONES), quiet_hours())
def test_quiet_hours_end_is_the_first_moment_outside(
    moment: datetime, zone_name: str, quiet: QuietHours
) -> None:
    zone = ZoneInfo(zone_name)
    end = quiet_hours_end(moment, zone, quiet)
    assert end >= moment
    assert not is_quiet(end, zone, quiet)
    assert end - moment <= timedelta(hours=25)
    if end > moment:
        assert is_quiet(moment, zone, quiet)
        # Nothing earlier would do: every minute before it, and the last second, is quiet.
        assert is_quiet(end - timedelta(seconds=1), zone, quiet)
        probe = moment
        while probe < end:
            assert is_quiet(probe, zone, quiet), probe
            probe += timedelta(minutes=7)


def test_cap_defers_until_the_oldest_counted_send_leaves_the_window() -> None:
    cap = SendCap(max_sends=2, window=timedelta(hours=24))
    now = utc(2024, 6, 11, 12)
    sends = [utc(2024, 6, 11, 8), utc(2024, 6, 10, 20)]
    # Two sends in the last 24 h: the next may go when the one at 20:00 yesterday leaves.
    assert cap_clear_at(now, sends, cap) == utc(2024, 6, 11, 20)
    assert cap_clear_at(now, sends[:1], cap) == now  # one send: room for another
    assert cap_clear_at(now, [], None) == now
    three = [*sends, utc(2024, 6, 11, 11)]
    assert cap_clear_at(now, three, cap) == utc(2024, 6, 12, 8)


@settings(max_examples=150, derandomize=True, deadline=None)
@given(
    instants,
    st.lists(st.integers(min_value=0, max_value=72 * 60), max_size=8),
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=1, max_value=48),
    st.sampled_from(ZONES),
    quiet_hours(),
)
def test_a_capped_send_is_deferred_to_a_moment_that_allows_it_never_dropped(
    now: datetime,
    minutes_ago: list[int],
    max_sends: int,
    window_hours: int,
    zone_name: str,
    quiet: QuietHours,
) -> None:
    zone = ZoneInfo(zone_name)
    cap = SendCap(max_sends, timedelta(hours=window_hours))
    sends = [now - timedelta(minutes=m) for m in minutes_ago]
    at, reason = send_time(now, zone, quiet, cap, sends)
    assert at >= now
    in_window = [s for s in sends if s > at - cap.window]
    assert len(in_window) < max_sends
    assert not is_quiet(at, zone, quiet)
    # Bounded: at most the cap's window plus one night of quiet hours.
    assert at - now <= cap.window + timedelta(hours=25)
    if at == now:
        assert reason is None
    else:
        assert reason in (DeferReason.FREQUENCY_CAP, DeferReason.QUIET_HOURS)
        # Nothing earlier is allowed (checked at whole minutes).
        probe = now
        while probe < at - timedelta(minutes=1):
            counted = [s for s in sends if s > probe - cap.window]
            assert len(counted) >= max_sends or is_quiet(probe, zone, quiet)
            probe += timedelta(minutes=11)


def test_send_time_names_the_first_constraint_that_moved_it() -> None:
    cap = SendCap(1, timedelta(hours=16))
    # 23:00 in New York (03:00 UTC), one send at 01:00 UTC and a cap of one per 16 hours: the
    # cap holds it to 17:00 UTC (13:00 EDT), past the quiet hours' end at 09:00.
    now = utc(2024, 6, 11, 3)
    at, reason = send_time(now, NEW_YORK, NIGHT, cap, [utc(2024, 6, 11, 1)])
    assert (at, reason) == (utc(2024, 6, 11, 17), DeferReason.FREQUENCY_CAP)
    at, reason = send_time(now, NEW_YORK, NIGHT, cap, [])
    assert (at, reason) == (utc(2024, 6, 11, 13), DeferReason.QUIET_HOURS)
    at, reason = send_time(utc(2024, 6, 11, 15), NEW_YORK, NIGHT, None, [])
    assert (at, reason) == (utc(2024, 6, 11, 15), None)


def test_the_birthday_month_in_the_customers_zone() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # 2024-11-30 16:00 UTC is already December 1st, 01:00 in Tokyo.
    moment = utc(2024, 11, 30, 16)
    assert in_month(moment, 12, tokyo)
    assert not in_month(moment, 12, NEW_YORK)
    assert month_start_from(moment, 12, tokyo) == moment
    assert month_start_from(moment, 12, NEW_YORK) == utc(2024, 12, 1, 5)
    # A month already past this year: next year's.
    assert month_start_from(moment, 3, NEW_YORK) == utc(2025, 3, 1, 5)
    with pytest.raises(ValueError, match="month must be 1-12"):
        month_start_from(moment, 13, NEW_YORK)


def test_month_start_in_a_midnight_dst_gap() -> None:
    # Paraguay sprang forward at midnight on 2023-10-01: October began at 01:00 local, the
    # instant 04:00 UTC.
    asuncion = ZoneInfo("America/Asuncion")
    start = month_start_from(utc(2023, 9, 15), 10, asuncion)
    assert start == utc(2023, 10, 1, 4)
    assert in_month(start, 10, asuncion)
    assert not in_month(start - timedelta(seconds=1), 10, asuncion)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="moment must be timezone-aware"):
        quiet_hours_end(datetime(2024, 1, 1), NEW_YORK, NIGHT)
    with pytest.raises(ValueError, match="sent_at must be timezone-aware"):
        cap_clear_at(utc(2024, 1, 1), [datetime(2024, 1, 1)], SendCap(1, timedelta(hours=1)))
    assert require_aware(utc(2024, 1, 1)) == utc(2024, 1, 1)


def test_invalid_quiet_hours_and_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="same time"):
        QuietHours(time(9), time(9))
    with pytest.raises(ValueError, match="max_sends >= 1"):
        SendCap(0, timedelta(hours=1))
