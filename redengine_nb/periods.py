"""Pure window arithmetic: when does a time window of a minute/hour/day/week/month occur?

A :class:`TimeWindow` is a span inside a repeating calendar *unit*, written as two wall-clock
offsets from the start of the unit (seconds; for a month, seconds from the 1st at 00:00).
``start < end`` is a window inside one unit (``10:00``→``12:00``); ``end <= start`` wraps
into the next unit (``22:00``→``06:00``); ``start == end`` is a whole unit anchored at
``start`` (``daily starting 10:00``). Windows are closed at the start and open at the end.

All arithmetic is done on wall-clock (naive) times in the timezone of the instant passed in,
then turned into real instants:

* a wall time skipped by a spring-forward jump becomes the first instant after the gap (so
  a window inside the gap still opens, once, right after it);
* a repeated wall time (autumn) is taken at its first occurrence, so the repeated hour
  belongs to one occurrence and nothing repeats.

Instants are compared by their timestamps: Python compares two datetimes that share a
``tzinfo`` by wall time, which is wrong inside a repeated hour.

Nothing here knows about tasks, conditions or history.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

__all__ = ["DAY", "HOUR", "MINUTE", "MONTH", "WEEK", "Interval", "TimeWindow", "Unit", "localize"]


class Unit(enum.IntEnum):
    """A calendar unit, ordered by size."""

    MINUTE = 1
    HOUR = 2
    DAY = 3
    WEEK = 4
    MONTH = 5

    @property
    def length(self) -> int:
        """Nominal wall-clock length in seconds (a month counts as 31 days: offsets beyond
        the month's real end are clamped or skipped)."""
        return _LENGTH[self]


MINUTE, HOUR, DAY, WEEK, MONTH = Unit.MINUTE, Unit.HOUR, Unit.DAY, Unit.WEEK, Unit.MONTH
_LENGTH = {MINUTE: 60, HOUR: 3600, DAY: 86400, WEEK: 7 * 86400, MONTH: 31 * 86400}


@dataclass(frozen=True, slots=True)
class Interval:
    """``[start, end)`` as aware datetimes, with their epoch seconds."""

    start: datetime
    end: datetime

    @property
    def start_ts(self) -> float:
        return self.start.timestamp()

    @property
    def end_ts(self) -> float:
        return self.end.timestamp()

    def __contains__(self, when: datetime) -> bool:
        ts = when.timestamp()
        return self.start_ts <= ts < self.end_ts


def localize(naive: datetime, tz: tzinfo) -> datetime:
    """The instant a wall-clock time names in ``tz``.

    A repeated wall time gives its first occurrence; a skipped one (inside a DST gap) gives
    the first instant after the gap.
    """
    first = naive.replace(tzinfo=tz, fold=0)
    back = first.astimezone(UTC).astimezone(tz)
    if back.replace(tzinfo=None, fold=0) == naive:
        return first
    # Inside a gap: fold=1 reads the time with the offset after the jump (the earlier
    # instant), fold=0 with the one before (the later). The jump lies between the two.
    lo = int(naive.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(first.timestamp())
    if lo > hi:
        lo, hi = hi, lo
    after = datetime.fromtimestamp(hi, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, tz)


def _unit_start(wall: datetime, unit: Unit) -> datetime:
    if unit is MINUTE:
        return wall.replace(second=0, microsecond=0)
    if unit is HOUR:
        return wall.replace(minute=0, second=0, microsecond=0)
    day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit is DAY:
        return day
    if unit is WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _shift(start: datetime, unit: Unit, k: int) -> datetime:
    """The start of the unit ``k`` units after the one starting at ``start`` (wall time)."""
    if unit is MONTH:
        index = start.year * 12 + start.month - 1 + k
        return start.replace(year=index // 12, month=index % 12 + 1)
    return start + timedelta(seconds=_LENGTH[unit] * k)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A window repeating every ``unit``; see the module docstring."""

    unit: Unit
    start: int = 0
    end: int = 0

    def __post_init__(self) -> None:
        length = _LENGTH[self.unit]
        if not (0 <= self.start < length and 0 <= self.end <= length):
            raise ValueError(f"window offsets {self.start}..{self.end} outside a {self.unit.name}")

    @property
    def wraps(self) -> bool:
        return self.end <= self.start

    @property
    def is_whole(self) -> bool:
        """True for a window that covers every instant (the whole unit, maybe anchored)."""
        return self.start == self.end or (self.start == 0 and self.end == _LENGTH[self.unit])

    # -- occurrences -----------------------------------------------------------------
    def _occurrence(self, base: datetime, tz: tzinfo) -> Interval | None:
        """The occurrence whose start lies in the unit starting at wall time ``base``."""
        unit = self.unit
        naive_start = base + timedelta(seconds=self.start)
        nxt = _shift(base, unit, 1)
        if unit is MONTH and naive_start >= nxt:
            return None  # e.g. the 31st of a 30-day month
        if self.wraps:
            end_base, limit = nxt, _shift(base, unit, 2)
        else:
            end_base, limit = base, nxt
        naive_end = min(end_base + timedelta(seconds=self.end), limit)
        start = localize(naive_start, tz)
        end = localize(naive_end, tz)
        if end.timestamp() <= start.timestamp():
            # Both ends fell into one DST gap: keep the window, right after the gap.
            end = start + (naive_end - naive_start)
        return Interval(start, end)

    def rollback(self, when: datetime) -> Interval:
        """The occurrence containing ``when``, else the latest one that ended before it."""
        tz = _tz(when)
        base = _unit_start(when.replace(tzinfo=None, fold=0), self.unit)
        for k in range(0, -4, -1):
            occ = self._occurrence(_shift(base, self.unit, k), tz)
            if occ is not None and occ.start_ts <= when.timestamp():
                return occ
        raise AssertionError("unreachable: an occurrence starts within three units")

    def next_after(self, when: datetime) -> Interval:
        """The first occurrence that starts strictly after ``when``."""
        tz = _tz(when)
        base = _unit_start(when.replace(tzinfo=None, fold=0), self.unit)
        for k in range(0, 5):
            occ = self._occurrence(_shift(base, self.unit, k), tz)
            if occ is not None and occ.start_ts > when.timestamp():
                return occ
        raise AssertionError("unreachable: an occurrence starts within four units")

    def contains(self, when: datetime) -> bool:
        return when.timestamp() < self.rollback(when).end_ts

    def rollforward(self, when: datetime) -> datetime:
        """``when`` if it lies in an occurrence, else the start of the next one."""
        occ = self.rollback(when)
        if when.timestamp() < occ.end_ts:
            return when
        return self.next_after(when).start


def _tz(when: datetime) -> tzinfo:
    tz = when.tzinfo
    if tz is None:
        raise ValueError("window arithmetic needs a timezone-aware datetime")
    return tz
