"""When a step may go out: the customer's local zone, quiet hours in it, the birthday month, and
the per-customer cap across journeys. Quiet hours and the cap only ever move a send later.

Every instant in and out is timezone-aware; wall-clock arithmetic happens in the customer's
zone through zoneinfo, so DST gaps and repeated hours are handled by the zone's own rules.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.tagger.journeys.reasons import DeferReason
from services.tagger.journeys.zones import customer_zone_name


@dataclass(frozen=True)
class QuietHours:
    """No journey email while the customer's wall clock is in [start, end); start after end spans
    midnight (21:00-09:00)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours must not start and end at the same time")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are wall-clock times without a zone")

    def covers(self, wall: time) -> bool:
        """Whether this wall-clock time is inside the quiet hours."""
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end


@dataclass(frozen=True)
class SendCap:
    """At most `max_sends` marketing emails to one customer in any rolling `window`."""

    max_sends: int
    window: timedelta

    def __post_init__(self) -> None:
        if self.max_sends < 1 or self.window <= timedelta(0):
            raise ValueError("a send cap needs max_sends >= 1 and a positive window")


def require_aware(moment: datetime, name: str = "time") -> datetime:
    """The moment itself, or ValueError when it carries no zone (journeys never guess one)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone of that name, or ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def customer_zone(country_code: str | None, province_code: str | None, shop_zone: str) -> ZoneInfo:
    """The customer's local zone from their address (zones.py), else the shop's zone."""
    return load_zone(customer_zone_name(country_code, province_code, shop_zone))


def is_quiet(moment: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> bool:
    """Whether the customer's wall clock is inside the quiet hours at this instant."""
    if quiet is None:
        return False
    return quiet.covers(_wall(moment, zone).time())


def quiet_hours_end(moment: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime:
    """The first instant at or after `moment` outside the quiet hours (`moment` itself if it
    already is). An end time skipped by a DST gap ends the quiet hours when the gap does."""
    require_aware(moment, "moment")
    ended = moment
    # A DST gap can skip the end and land past the start again (quiet hours spanning
    # midnight with less free time than the jump): then the next end is the one. Each turn
    # moves to a later day's end, so a few turns always find a free instant.
    for _ in range(8):
        if quiet is None or not is_quiet(ended, zone, quiet):
            return ended
        ended = _next_end(ended, zone, quiet)
    return ended


def _next_end(moment: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime:
    local = _wall(moment, zone)
    day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day += timedelta(days=1)  # the evening part: quiet until tomorrow's end
    return _clock_reaches(day, quiet.end, zone, not_before=moment)


def cap_clear_at(
    moment: datetime, recent_sends: Iterable[datetime], cap: SendCap | None
) -> datetime:
    """The first instant at or after `moment` at which fewer than `cap.max_sends` of the sends
    lie within the window before it, so one more is allowed (`moment` itself if allowed now)."""
    require_aware(moment, "moment")
    if cap is None:
        return moment
    sends = sorted(require_aware(sent, "sent_at") for sent in recent_sends)
    if len(sends) < cap.max_sends:
        return moment
    # A send s counts at t while s > t - window. With the sends sorted, fewer than max_sends
    # count from the moment the (n - max_sends + 1)-th newest-but-kept one leaves the window.
    oldest_that_must_leave = sends[len(sends) - cap.max_sends]
    return max(moment, oldest_that_must_leave + cap.window)


def send_time(
    earliest: datetime,
    zone: ZoneInfo,
    quiet: QuietHours | None,
    cap: SendCap | None,
    recent_sends: Iterable[datetime],
) -> tuple[datetime, DeferReason | None]:
    """The first instant at or after `earliest` allowed by the cap and the quiet hours, and the
    first of them that moved it (None when neither did). Waiting only lets sends leave the cap's
    window, so once the cap allows a send, the end of quiet hours after it allows it too."""
    require_aware(earliest, "earliest")
    at = cap_clear_at(earliest, recent_sends, cap)
    reason = DeferReason.FREQUENCY_CAP if at > earliest else None
    ended = quiet_hours_end(at, zone, quiet)
    if ended > at and reason is None:
        reason = DeferReason.QUIET_HOURS
    return ended, reason


def in_month(moment: datetime, month: int, zone: ZoneInfo) -> bool:
    """Whether the instant falls in that calendar month on the customer's wall clock."""
    return _wall(moment, zone).month == month


def month_start_from(moment: datetime, month: int, zone: ZoneInfo) -> datetime:
    """The first instant at or after `moment` inside the month (1-12) in the customer's zone:
    `moment` itself during that month, else local midnight of the month's next first day."""
    require_aware(moment, "moment")
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1-12, not {month}")
    local = _wall(moment, zone)
    if local.month == month:
        return moment
    year = local.year if month > local.month else local.year + 1
    return _clock_reaches(date(year, month, 1), time(0), zone, not_before=moment)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _clock_reaches(day: date, wall: time, zone: ZoneInfo, not_before: datetime) -> datetime:
    """The first instant not before `not_before` at which the local clock shows `wall` on `day`,
    or, when a DST gap skips that time, the end of the gap (where the clock jumps past it)."""
    target = datetime.combine(day, wall)
    # fold=0 is the earlier of a repeated wall time, fold=1 the later one.
    for fold in (0, 1):
        instant = target.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant >= not_before and _wall(instant, zone) == target:
            return instant
    # Skipped: fold=1 reads the time with the offset after the jump (an instant before it),
    # fold=0 with the offset before (an instant after it). The clock passes `target` between.
    # Transitions fall on whole seconds: search those.
    bounds = sorted(target.replace(tzinfo=zone, fold=fold).timestamp() for fold in (0, 1))
    low, high = math.floor(bounds[0]), math.ceil(bounds[1])
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= target:
            high = middle
        else:
            low = middle
    return max(datetime.fromtimestamp(high, UTC), not_before)
