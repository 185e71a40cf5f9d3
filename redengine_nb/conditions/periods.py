"""Pure window arithmetic: when does a time window of a minute/hour/day/week/month/year occur?

A :class:`TimeWindow` is a span inside a repeating calendar *unit*, written as two wall-clock
offsets from the start of the unit (seconds; for a month, seconds from the 1st at 00:00; for a
year, seconds from the 1st of January on a leap year's axis, see :data:`YEAR_MONTH_STARTS`).
``start < end`` is a window inside one unit (``10:00``→``12:00``); ``end <= start`` wraps
into the next unit (``22:00``→``06:00``); ``start == end`` is a whole unit anchored at
``start`` (``daily starting 10:00``). Windows are closed at the start and open at the end.

All arithmetic is done on wall-clock (naive) times in the timezone of the instant passed in,
then turned into real instants:

* a wall time skipped by a spring-forward jump becomes the first instant after the gap (so
  a window inside the gap still opens, once, right after it); this is logged at INFO on
  ``redengine_nb.periods``, once per occurrence, when the occurrence is computed;
* a repeated wall time (autumn) is taken at its first occurrence, so the repeated hour
  belongs to one occurrence and nothing repeats.

Minute and hour windows are the exception: they follow the clock as it reads, like elapsed
time. The time line is cut into *passes* at each backward jump; inside a pass, wall times
are resolved as above, and a wall time outside it is clamped to the pass's edge. So the
second pass of a repeated hour has its own minutes and hours (``hourly`` runs again in it,
``time of minute before 30`` is true in the first half of each of its minutes), a minute or
hour window cut by the jump ends at it and a new one begins right after, and a minute or
hour window that lies wholly inside a spring-forward gap does not occur (as with cron);
one whose start was skipped but whose end was not opens at the first instant after the gap.

Instants are compared by their timestamps: Python compares two datetimes that share a
``tzinfo`` by wall time, which is wrong inside a repeated hour.

Nothing here knows about tasks, conditions or history.
"""

from __future__ import annotations

import enum
import logging
from bisect import bisect_right
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

__all__ = [
    "DAY",
    "HOUR",
    "MINUTE",
    "MONTH",
    "SECOND",
    "WEEK",
    "YEAR",
    "YEAR_MONTH_STARTS",
    "Interval",
    "TimeWindow",
    "Unit",
    "localize",
]


class Unit(enum.IntEnum):
    """A calendar unit, ordered by size."""

    SECOND = 0  # whole units only ('secondly'): offsets are whole seconds
    MINUTE = 1
    HOUR = 2
    DAY = 3
    WEEK = 4
    MONTH = 5
    YEAR = 6

    @property
    def length(self) -> int:
        """Nominal wall-clock length in seconds (a month counts as 31 days, a year as 366:
        offsets beyond the month's real end are clamped or skipped)."""
        return _LENGTH[self]


SECOND, MINUTE, HOUR, DAY = Unit.SECOND, Unit.MINUTE, Unit.HOUR, Unit.DAY
WEEK, MONTH, YEAR = Unit.WEEK, Unit.MONTH, Unit.YEAR
_LENGTH = {
    SECOND: 1,
    MINUTE: 60,
    HOUR: 3600,
    DAY: 86400,
    WEEK: 7 * 86400,
    MONTH: 31 * 86400,
    YEAR: 366 * 86400,
}
#: A year's offsets are on the axis of a leap year (Rocketry's): the day each month starts
#: on, counted from the 1st of January, February having 29 days; the 13th entry is the end.
#: In other years the 29th of February does not exist: a point there is the 1st of March.
YEAR_MONTH_STARTS = (0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335, 366)
_INF = float("inf")

_log = logging.getLogger("redengine_nb.periods")  # the name the docs give
# Occurrences whose start fell into a DST gap that were already logged: (window, zone,
# start). Bounded by clearing; a repeat after a clear is one more log line, nothing worse.
_GAP_LOGGED: set[tuple[object, ...]] = set()
_GAP_LOGGED_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Interval:
    """``[start, end)`` as aware datetimes, with their epoch seconds."""

    start: datetime
    end: datetime
    #: The wall time the window should have opened at, when a spring-forward jump skipped it
    #: (``start`` is then the first instant after the gap).
    skipped: datetime | None = field(default=None, compare=False, repr=False)

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
    return _localize(naive, tz)[0]


def _localize(naive: datetime, tz: tzinfo) -> tuple[datetime, bool]:
    """:func:`localize`, and whether ``naive`` lies in a gap."""
    first = naive.replace(tzinfo=tz, fold=0)
    back = first.astimezone(UTC).astimezone(tz)
    if back.replace(tzinfo=None, fold=0) == naive:
        return first, False
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
    return datetime.fromtimestamp(hi, tz), True


def _offset(ts: float, tz: tzinfo) -> float:
    off = datetime.fromtimestamp(ts, tz).utcoffset()
    return 0.0 if off is None else off.total_seconds()


def _transition(a: float, b: float, tz: tzinfo) -> float:
    """The first whole second in ``(a, b]`` with ``b``'s UTC offset (one change between)."""
    lo, hi = int(a), int(b) + 1
    target = _offset(hi, tz)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid, tz) == target:
            hi = mid
        else:
            lo = mid
    return float(hi)


# How far around an instant backward jumps are looked for: the search reach of rollback and
# next_after plus the largest jump (a day, for the date line).
_PASS_REACH = 25 * 3600


def _pass(ts: float, tz: tzinfo, unit: Unit) -> tuple[float, float]:
    """``[lo, hi)``: the span around ``ts`` between two backward jumps of the clock (``-inf``
    / ``inf`` when none is near enough to matter to ``unit``'s arithmetic)."""
    span = _PASS_REACH + 8 * _LENGTH[unit]
    off = _offset(ts, tz)
    lo = _transition(ts - span, ts, tz) if _offset(ts - span, tz) > off else -_INF
    hi = _transition(ts, ts + span, tz) if _offset(ts + span, tz) < off else _INF
    return lo, hi


_EXACT, _GAP, _CLAMPED = 0, 1, 2


def _resolve(naive: datetime, tz: tzinfo, lo: float, hi: float) -> tuple[float, int]:
    """The instant in the pass ``[lo, hi)`` at which the wall clock reads ``naive`` (epoch
    seconds), and how it was found: exactly, after a gap, or clamped to an edge of the pass."""
    when, gap = _localize(naive, tz)
    ts = when.timestamp()
    if ts < lo:
        if not gap:
            second = naive.replace(tzinfo=tz, fold=1).timestamp()
            if lo <= second < hi:
                return second, _EXACT
        return lo, _CLAMPED
    if ts >= hi:
        return hi, _CLAMPED
    return ts, _GAP if gap else _EXACT


def _unit_start(wall: datetime, unit: Unit) -> datetime:
    if unit is SECOND:
        return wall.replace(microsecond=0)
    if unit is MINUTE:
        return wall.replace(second=0, microsecond=0)
    if unit is HOUR:
        return wall.replace(minute=0, second=0, microsecond=0)
    day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit is DAY:
        return day
    if unit is WEEK:
        return day - timedelta(days=day.weekday())
    if unit is YEAR:
        return day.replace(month=1, day=1)
    return day.replace(day=1)


def _shift(start: datetime, unit: Unit, k: int) -> datetime:
    """The start of the unit ``k`` units after the one starting at ``start`` (wall time)."""
    if unit is MONTH:
        index = start.year * 12 + start.month - 1 + k
        return start.replace(year=index // 12, month=index % 12 + 1)
    if unit is YEAR:
        return start.replace(year=start.year + k)
    return start + timedelta(seconds=_LENGTH[unit] * k)


def _year_wall(base: datetime, offset: int) -> datetime:
    """The wall time ``offset`` seconds into the year starting at ``base``, read on the
    leap-year axis (:data:`YEAR_MONTH_STARTS`): the 29th of February of another year is the
    1st of March."""
    days, rest = divmod(offset, 86400)
    month = bisect_right(YEAR_MONTH_STARTS, days) - 1
    if month >= 12:
        return base.replace(year=base.year + 1)
    first = base.replace(month=month + 1)
    day = days - YEAR_MONTH_STARTS[month]
    if day >= monthrange(first.year, month + 1)[1]:
        return _shift(first, MONTH, 1)
    return first + timedelta(days=day, seconds=rest)


def _wall(base: datetime, unit: Unit, offset: int) -> datetime:
    if unit is YEAR:
        return _year_wall(base, offset)
    return base + timedelta(seconds=offset)


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
    def _naive(self, base: datetime) -> tuple[datetime, datetime] | None:
        """Wall-clock start and end of the occurrence in the unit starting at ``base``."""
        unit = self.unit
        naive_start = _wall(base, unit, self.start)
        nxt = _shift(base, unit, 1)
        if unit is MONTH and naive_start >= nxt:
            return None  # e.g. the 31st of a 30-day month
        if self.wraps:
            end_base, limit = nxt, _shift(base, unit, 2)
        else:
            end_base, limit = base, nxt
        naive_end = min(_wall(end_base, unit, self.end), limit)
        if unit is YEAR and naive_end <= naive_start:
            return None  # the 29th of February of a year that has none
        return naive_start, naive_end

    def _occurrence(self, base: datetime, tz: tzinfo) -> Interval | None:
        """The occurrence whose start lies in the unit starting at wall time ``base`` (day,
        week and month windows)."""
        naive = self._naive(base)
        if naive is None:
            return None
        naive_start, naive_end = naive
        start, gap = _localize(naive_start, tz)
        end = localize(naive_end, tz)
        if end.timestamp() <= start.timestamp():
            # Both ends fell into one DST gap: keep the window, right after the gap.
            end = start + (naive_end - naive_start)
        return Interval(start, end, naive_start if gap else None)

    def _occurrence_in(self, base: datetime, tz: tzinfo, lo: float, hi: float) -> Interval | None:
        """The same for minute and hour windows, inside the pass ``[lo, hi)``."""
        naive = self._naive(base)
        assert naive is not None
        start, how = _resolve(naive[0], tz, lo, hi)
        end = _resolve(naive[1], tz, lo, hi)[0]
        if end <= start:
            return None  # wholly skipped by a gap, or outside this pass
        skipped = naive[0] if how == _GAP else None
        return Interval(datetime.fromtimestamp(start, tz), datetime.fromtimestamp(end, tz), skipped)

    def rollback(self, when: datetime) -> Interval:
        """The occurrence containing ``when``, else the latest one that ended before it."""
        tz = _tz(when)
        unit = self.unit
        if unit <= HOUR:
            return _logged(self, tz, self._rollback_passes(when, tz))
        base = _unit_start(when.replace(tzinfo=None, fold=0), unit)
        # A window on the 29th of February occurs in leap years only (8 years apart at most).
        for k in range(0, -10 if unit is YEAR else -4, -1):
            occ = self._occurrence(_shift(base, unit, k), tz)
            if occ is not None and occ.start_ts <= when.timestamp():
                return _logged(self, tz, occ)
        raise AssertionError("unreachable: an occurrence starts within three units")

    def next_after(self, when: datetime) -> Interval:
        """The first occurrence that starts strictly after ``when``."""
        tz = _tz(when)
        unit = self.unit
        if unit <= HOUR:
            return _logged(self, tz, self._next_after_passes(when, tz))
        base = _unit_start(when.replace(tzinfo=None, fold=0), unit)
        for k in range(0, 10 if unit is YEAR else 5):
            occ = self._occurrence(_shift(base, unit, k), tz)
            if occ is not None and occ.start_ts > when.timestamp():
                return _logged(self, tz, occ)
        raise AssertionError("unreachable: an occurrence starts within four units")

    # Minute and hour windows: the units near ``when`` in its pass; when none qualifies
    # (they were skipped by a gap, or lie in the neighbouring pass), look again from just
    # beyond the units looked at. Each round moves strictly away from ``when``.
    def _rollback_passes(self, when: datetime, tz: tzinfo) -> Interval:
        unit = self.unit
        ts = ref = when.timestamp()
        wall = when
        for _ in range(8):
            lo, hi = _pass(ref, tz, unit)
            base = _unit_start(wall.replace(tzinfo=None, fold=0), unit)
            for k in range(0, -4, -1):
                occ = self._occurrence_in(_shift(base, unit, k), tz, lo, hi)
                if occ is not None and occ.start_ts <= ts:
                    return occ
            ref = _resolve(_shift(base, unit, -3), tz, lo, hi)[0] - 1
            wall = datetime.fromtimestamp(ref, tz)
        raise AssertionError("unreachable: an occurrence starts within eight rounds")

    def _next_after_passes(self, when: datetime, tz: tzinfo) -> Interval:
        unit = self.unit
        ts = ref = when.timestamp()
        wall = when
        first = 0
        for _ in range(8):
            lo, hi = _pass(ref, tz, unit)
            base = _unit_start(wall.replace(tzinfo=None, fold=0), unit)
            for k in range(first, 5):
                occ = self._occurrence_in(_shift(base, unit, k), tz, lo, hi)
                if occ is not None and occ.start_ts > ts:
                    return occ
            # From the next pass (or past a gap), the window begun in the unit before may
            # open at its first instant.
            ref = max(_resolve(_shift(base, unit, 5), tz, lo, hi)[0], ref + 1)
            wall = datetime.fromtimestamp(ref, tz)
            first = -1
        raise AssertionError("unreachable: an occurrence starts within eight rounds")

    def contains(self, when: datetime) -> bool:
        return when.timestamp() < self.rollback(when).end_ts

    def rollforward(self, when: datetime) -> datetime:
        """``when`` if it lies in an occurrence, else the start of the next one."""
        occ = self.rollback(when)
        if when.timestamp() < occ.end_ts:
            return when
        return self.next_after(when).start


def _logged(window: TimeWindow, tz: tzinfo, occ: Interval) -> Interval:
    """``occ``; the first time an occurrence opens late because a DST gap skipped its start,
    say so (window recomputation only: conditions cache the answer)."""
    skipped = occ.skipped
    if skipped is not None:
        key = (window, str(tz), occ.start_ts)
        if key not in _GAP_LOGGED:
            if len(_GAP_LOGGED) >= _GAP_LOGGED_SIZE:
                _GAP_LOGGED.clear()
            _GAP_LOGGED.add(key)
            _log.info(
                "DST: %s does not exist in %s (skipped by the clocks going forward); "
                "the window that opens then opens at %s, the first instant after the gap",
                skipped.isoformat(sep=" "),
                tz,
                occ.start.isoformat(sep=" "),
            )
    return occ


def _tz(when: datetime) -> tzinfo:
    tz = when.tzinfo
    if tz is None:
        raise ValueError("window arithmetic needs a timezone-aware datetime")
    return tz
