"""Conditions the clock decides: periods (``daily between ...``), ``time of ...``, ``every``,
``cron``.

Hot paths compare ``ctx.ts`` (a float) with a cached *segment*: the span of time over which
the window arithmetic gives the same answer. The window is recomputed only when the clock
leaves that segment, so ``is_met`` costs a few comparisons and one or four history lookups.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from datetime import datetime, timedelta, tzinfo

from ..records import FINISHED, Action
from ..runlog.base import History, last_of
from ..timetext import (
    format_duration,
    to_timedelta,
)
from .base import BaseCondition, Context
from .cron import _cron_fields, _cron_next, _croniter, _dt
from .periods import (
    DAY,
    HOUR,
    MINUTE,
    MONTH,
    SECOND,
    WEEK,
    YEAR,
    Interval,
    TimeWindow,
    Unit,
)
from .points import (
    HOURS_OF_DAY_HINT,
    format_point,
    format_window,
    parse_point,
    window_after,
    window_before,
    window_between,
    window_on,
)

__all__ = [
    "UNIT_NAMES",
    "Cron",
    "Every",
    "PeriodCondition",
    "TimeCondition",
    "explain",
    "format_window",
    "last_finish",
    "parse_point",
    "window_after",
    "window_before",
    "window_between",
    "window_on",
]

#: The adverb of each unit (``daily``) and its noun (``time of day``).
UNIT_NAMES: dict[Unit, tuple[str, str]] = {
    SECOND: ("secondly", "second"),
    MINUTE: ("minutely", "minute"),
    HOUR: ("hourly", "hour"),
    DAY: ("daily", "day"),
    WEEK: ("weekly", "week"),
    MONTH: ("monthly", "month"),
    YEAR: ("yearly", "year"),
}

#: The unit whose window a period phrase takes: the period's own, as in Red Engine
#: (``hourly between 45:00 and 50:00`` is minutes 45 to 50 of every hour).
WINDOW_UNIT: dict[Unit, Unit] = {
    SECOND: SECOND,
    MINUTE: MINUTE,
    HOUR: HOUR,
    DAY: DAY,
    WEEK: WEEK,
    MONTH: MONTH,
    YEAR: YEAR,
}

_FINISHED = tuple(FINISHED)
_INF = float("inf")


def last_finish(history: History, task: str) -> float | None:
    """The newest end of a run of ``task`` that finished (success, fail, terminate, inaction)."""
    return last_of(history, task, _FINISHED)


def quantize(ts: float) -> float:
    """``ts`` rounded to a whole microsecond exactly as ``datetime.fromtimestamp`` rounds it
    (half to even), as the float ``.timestamp()`` would give back: instants computed from
    run-log times (``last + 10 minutes``) then equal the datetimes they stand for."""
    whole = math.floor(ts)
    return (whole * 1_000_000 + round((ts - whole) * 1e6)) / 1_000_000


# -- segments: a cached answer of the window arithmetic -------------------------------------
# (tz, lo, hi, start, since): for lo <= ts < hi in zone tz the condition is inside an
# occurrence that began at ``start`` (or outside any when ``start`` is None; ``since`` is then
# the start of the occurrence that closed at ``lo``, for spans that look back at it).
_Segment = tuple[tzinfo | None, float, float, float | None, float | None]
_EMPTY: _Segment = (None, _INF, -_INF, None, None)


_Span = tuple[float, float, float | None, float | None]


def _window_segment(window: TimeWindow, now: datetime) -> _Span:
    occ = window.rollback(now)
    if now.timestamp() < occ.end_ts:
        return occ.start_ts, occ.end_ts, occ.start_ts, None
    return occ.end_ts, window.next_after(now).start_ts, None, occ.start_ts


# -- the shared segment cache ---------------------------------------------------------------
# Many tasks often carry equal conditions (10,000 tasks ``daily``): each object's first check
# would redo the same window arithmetic (tens of µs). A segment is a pure function of what
# ``_compute`` reads (the window, see ``_window_key``) and the zone, valid for every ``ts``
# in ``[lo, hi)``, so objects share them here: keyed by (window key, zone), a few recent
# segments each, looked up by ``lo <= ts < hi`` and the zone's identity exactly as the
# per-object cache does (another zone object, or an instant outside every cached span,
# recomputes). LRU over keys, bounded; a lock keeps the reordering safe across threads (it
# is only taken when an object's own cache misses).
_SHARED_KEYS = 256  # (window, zone) pairs
_SHARED_PER_KEY = 4  # segments per pair: the present, look-aheads, a clock that moved back
_SHARED: OrderedDict[tuple[object, ...], list[_Segment]] = OrderedDict()
_SHARED_LOCK = threading.Lock()


def clear_segment_cache() -> None:
    """Forget every shared segment (tests, benchmarks)."""
    with _SHARED_LOCK:
        _SHARED.clear()


def _shared_get(key: tuple[object, ...], tz: tzinfo | None, ts: float) -> _Segment | None:
    with _SHARED_LOCK:
        segs = _SHARED.get(key)
        if segs is None:
            return None
        for seg in segs:
            if seg[1] <= ts < seg[2] and seg[0] is tz:
                _SHARED.move_to_end(key)
                return seg
        return None


def _shared_put(key: tuple[object, ...], seg: _Segment) -> None:
    with _SHARED_LOCK:
        segs = _SHARED.get(key)
        if segs is None:
            if len(_SHARED) >= _SHARED_KEYS:
                _SHARED.popitem(last=False)
            _SHARED[key] = [seg]
            return
        _SHARED.move_to_end(key)
        segs.insert(0, seg)
        del segs[_SHARED_PER_KEY:]


class _Windowed(BaseCondition):
    """A condition with a cached segment."""

    __slots__ = ("_seg", "_seg2", "_wkey")

    def __init__(self) -> None:
        # Two entries: the present, and the last look-ahead (next_due asks about the next
        # occurrence, which would otherwise evict the present every time).
        self._seg: _Segment = _EMPTY
        self._seg2: _Segment = _EMPTY
        self._wkey: tuple[object, ...] | None = None

    def _compute(self, now: datetime) -> _Span:
        raise NotImplementedError

    def _window_key(self) -> tuple[object, ...]:
        """Everything ``_compute`` reads, with the class that reads it: objects with equal
        keys compute equal segments (and share them). By default the class and its value:
        conditions are immutable values, so equal ones compute alike."""
        return (type(self), self._key())

    def _segment(self, ctx: Context) -> _Segment:
        return self._segment_at(ctx, ctx.ts)

    def _segment_at(self, ctx: Context, ts: float) -> _Segment:
        """The segment holding epoch seconds ``ts`` in ``ctx``'s zone.

        A hit needs ``ts`` inside the cached span *and* the same zone object, so a clock
        that moved (either way) or another zone recomputes rather than reusing an answer.
        """
        tz = ctx.now.tzinfo
        seg = self._seg
        if seg[1] <= ts < seg[2] and seg[0] is tz:
            return seg
        other = self._seg2
        if other[1] <= ts < other[2] and other[0] is tz:
            self._seg, self._seg2 = other, seg
            return other
        wkey = self._wkey
        if wkey is None:
            wkey = self._wkey = self._window_key()
        key: tuple[object, ...] | None = (wkey, tz)
        try:
            got = _shared_get((wkey, tz), tz, ts)
        except TypeError:  # a tzinfo that cannot be hashed: not shared
            key = None
            got = None
        if got is None:
            lo, hi, start, since = self._compute(ctx.now if ts == ctx.ts else _dt(ts, tz))
            got = (tz, lo, hi, start, since)
            if key is not None:
                _shared_put(key, got)
        self._seg, self._seg2 = got, seg
        return got


class PeriodCondition(_Windowed):
    """``daily``, ``hourly between 09:00 and 17:00``, ``weekly on Monday``,
    ``daily starting 10:00``: once per occurrence, counting finishes since it began."""

    __slots__ = ("_unit_window", "anchor", "unit", "window")

    def __init__(self, unit: Unit, window: TimeWindow | None = None, anchor: int = 0) -> None:
        super().__init__()
        wunit = WINDOW_UNIT[unit]
        if window is not None and window.unit is not wunit:
            raise ValueError(f"a {UNIT_NAMES[unit][0]} window is a time of {UNIT_NAMES[wunit][1]}")
        if window is not None and window.is_whole:
            if window.start != 0 and unit is wunit:
                anchor = window.start
            window = None
        if window is not None and anchor:
            raise ValueError("'starting' cannot be combined with a window")
        self.unit = unit
        self.window = window
        self.anchor = anchor
        self._unit_window = TimeWindow(unit, anchor, anchor)

    def _compute(self, now: datetime) -> _Span:
        window = self.window
        if window is None:
            occ = self._unit_window.rollback(now)
            return occ.start_ts, occ.end_ts, occ.start_ts, None
        lo, hi, start, since = _window_segment(window, now)
        if start is None or self.unit is window.unit:
            return lo, hi, start, since
        unit_occ = self._unit_window.rollback(now)
        lo = max(lo, unit_occ.start_ts)
        return lo, min(hi, unit_occ.end_ts), lo, None

    def _window_key(self) -> tuple[object, ...]:
        return (PeriodCondition, self.unit, self.window, self.anchor)

    def _done(self, ctx: Context, start: float) -> bool:
        last = last_finish(ctx.history, ctx.task_name(None))
        return last is not None and last >= start

    def is_met(self, ctx: Context) -> bool:
        start = self._segment(ctx)[3]
        return start is not None and not self._done(ctx, start)

    def _next_start_after(self, ctx: Context, ts: float) -> float:
        """Start of the first occurrence beginning strictly after ``ts``."""
        _, _lo, hi, start, _ = self._segment_at(ctx, ts)
        if start is None:
            return hi
        nxt = self._segment_at(ctx, hi)
        return nxt[3] if nxt[3] is not None and nxt[3] > ts else nxt[2]

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        start = self._segment_at(ctx, ts)[3]
        last = last_finish(ctx.history, ctx.task_name(None))
        if start is not None and (last is None or last < start):
            return ts
        return self._next_start_after(ctx, ts if last is None or last < ts else last)

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        _, _lo, hi, start, _ = self._segment_at(ctx, ts)
        if start is not None and not self._done(ctx, start):
            return hi
        return ts

    def next_due(self, ctx: Context) -> datetime | None:
        return ctx.when(self._due_at(ctx, ctx.ts))

    def next_undue(self, ctx: Context) -> datetime | None:
        return ctx.when(self._undue_at(ctx, ctx.ts))

    # -- fluent forms ----------------------------------------------------------------
    def _with(self, window: TimeWindow) -> PeriodCondition:
        return PeriodCondition(self.unit, window)

    def between(self, start: str, end: str) -> PeriodCondition:
        return self._with(window_between(WINDOW_UNIT[self.unit], start, end))

    def after(self, start: str) -> PeriodCondition:
        return self._with(window_after(WINDOW_UNIT[self.unit], start))

    def before(self, end: str) -> PeriodCondition:
        return self._with(window_before(WINDOW_UNIT[self.unit], end))

    def on(self, when: str) -> PeriodCondition:
        return self._with(window_on(WINDOW_UNIT[self.unit], when))

    at = on

    def starting(self, when: str) -> PeriodCondition:
        return PeriodCondition(self.unit, None, parse_point(self.unit, when))

    # -- value -----------------------------------------------------------------------
    def __str__(self) -> str:
        text = UNIT_NAMES[self.unit][0]
        if self.anchor:
            return f"{text} starting {format_point(self.unit, self.anchor)}"
        if self.window is not None:
            return f"{text} {format_window(self.window)}"
        return text

    def _key(self) -> tuple[object, ...]:
        return (self.unit, self.window, self.anchor)


class TimeCondition(_Windowed):
    """``time of day between 08:00 and 10:00`` and friends: only the clock decides."""

    __slots__ = ("window",)

    def __init__(self, window: TimeWindow) -> None:
        super().__init__()
        if window.is_whole:
            window = TimeWindow(window.unit)
        self.window = window

    def _compute(self, now: datetime) -> _Span:
        if self.window.is_whole:
            return -_INF, _INF, -_INF, None
        return _window_segment(self.window, now)

    def _window_key(self) -> tuple[object, ...]:
        return (TimeCondition, self.window)

    def is_met(self, ctx: Context) -> bool:
        return self._segment(ctx)[3] is not None

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        seg = self._segment_at(ctx, ts)
        return ts if seg[3] is not None else seg[2]

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        seg = self._segment_at(ctx, ts)
        if seg[3] is None:
            return ts
        return None if seg[2] == _INF else seg[2]

    def next_due(self, ctx: Context) -> datetime | None:
        return ctx.when(self._due_at(ctx, ctx.ts))

    def next_undue(self, ctx: Context) -> datetime | None:
        return ctx.when(self._undue_at(ctx, ctx.ts))

    def interval(self, when: datetime) -> Interval:
        return self.window.rollback(when)

    def _with(self, window: TimeWindow) -> TimeCondition:
        return TimeCondition(window)

    def between(self, start: str, end: str) -> TimeCondition:
        return self._with(window_between(self.window.unit, start, end))

    def after(self, start: str) -> TimeCondition:
        return self._with(window_after(self.window.unit, start))

    def before(self, end: str) -> TimeCondition:
        return self._with(window_before(self.window.unit, end))

    def on(self, when: str) -> TimeCondition:
        return self._with(window_on(self.window.unit, when))

    at = on

    def __str__(self) -> str:
        text = f"time of {UNIT_NAMES[self.window.unit][1]}"
        rest = format_window(self.window)
        return f"{text} {rest}" if rest else text

    def _key(self) -> tuple[object, ...]:
        return (self.window,)


class Every(BaseCondition):
    """``every 10 minutes``: no run of the task started within the last duration.

    A run that started late by less than the duration counts from the instant it was due
    (when the scheduler knows it): runs due at 09:00 and started at 09:00:00.002 make the
    next due at 09:10, not 09:10:00.002, so the delays do not add up.
    """

    __slots__ = ("period", "seconds")

    def __init__(self, period: str | float | timedelta) -> None:
        self.period = to_timedelta(period)
        self.seconds = self.period.total_seconds()
        if self.seconds <= 0:
            raise ValueError(
                f"'every' needs a positive duration, got {format_duration(self.period)!r}"
            )

    def _since(self, ctx: Context) -> float | None:
        """The instant the period counts from: the last run's start, or the instant that
        run was due when it started less than a period after it (the scheduler says so
        through ``history.due_of``), so that a steady schedule keeps its cadence instead
        of drifting by each run's start delay."""
        history = ctx.history
        task = ctx.task
        name = task if task is not None else ctx.task_name(None)
        last = history.last(name, Action.RUN)
        if last is None:
            return None
        due_of = getattr(history, "due_of", None)
        if due_of is not None:
            due: float = due_of(name, last)
            if last - due < self.seconds:
                return due
        return last

    def is_met(self, ctx: Context) -> bool:
        since = self._since(ctx)
        return since is None or ctx.ts - since >= self.seconds

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        since = self._since(ctx)
        if since is None or ts - since >= self.seconds:
            return ts
        return quantize(since + self.seconds)

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        since = self._since(ctx)
        return None if since is None or ts - since >= self.seconds else ts

    def next_due(self, ctx: Context) -> datetime | None:
        return ctx.when(self._due_at(ctx, ctx.ts))

    def next_undue(self, ctx: Context) -> datetime | None:
        return None if self.is_met(ctx) else ctx.now

    def __str__(self) -> str:
        return f"every {format_duration(self.period)}"

    def _key(self) -> tuple[object, ...]:
        return (self.seconds,)


class Cron(_Windowed):
    """``cron */15 * * * *``: now is in a matching minute and the task has not started in it."""

    __slots__ = ("expression",)

    def __init__(self, expression: str) -> None:
        super().__init__()
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(
                f"a cron expression has 5 fields (minute hour day month weekday), "
                f"got {len(fields)} in {expression.strip()!r}"
            )
        text = " ".join(fields)
        if not _croniter().is_valid(text):
            raise ValueError(f"bad cron expression {text!r}")
        self.expression = text

    def _compute(self, now: datetime) -> _Span:
        lo = now.timestamp() // 60 * 60
        minute = _dt(lo, now.tzinfo)
        fields = _cron_fields(self.expression)
        if fields is not None:
            hit = fields.matches(minute)
        else:
            hit = bool(_croniter().match(self.expression, minute))
        return lo, lo + 60, lo if hit else None, None

    def _window_key(self) -> tuple[object, ...]:
        return (Cron, self.expression)

    def _met_at(self, ctx: Context, ts: float) -> bool:
        start = self._segment_at(ctx, ts)[3]
        if start is None:
            return False
        last = ctx.history.last(ctx.task_name(None), Action.RUN)
        return last is None or last < start

    def is_met(self, ctx: Context) -> bool:
        return self._met_at(ctx, ctx.ts)

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        if self._met_at(ctx, ts):
            return ts
        last = ctx.history.last(ctx.task_name(None), Action.RUN)
        base = ts if last is None else max(ts, last)
        return _cron_next(self.expression, base, ctx.now.tzinfo)

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        if self._met_at(ctx, ts):
            return self._segment_at(ctx, ts)[2]
        return ts

    def next_due(self, ctx: Context) -> datetime | None:
        return ctx.when(self._due_at(ctx, ctx.ts))

    def next_undue(self, ctx: Context) -> datetime | None:
        return ctx.when(self._undue_at(ctx, ctx.ts))

    def __str__(self) -> str:
        return f"cron {self.expression}"

    def _key(self) -> tuple[object, ...]:
        return (self.expression,)


# -- readings -------------------------------------------------------------------------------
def _parts(cond: BaseCondition) -> list[BaseCondition]:
    found: list[BaseCondition] = [cond]
    for attr in ("parts", "part"):
        inner = getattr(cond, attr, None)
        if isinstance(inner, tuple):
            for part in inner:
                found.extend(_parts(part))
        elif isinstance(inner, BaseCondition):
            found.extend(_parts(inner))
    return found


def _span_text(window: TimeWindow) -> str:
    unit = window.unit
    start = format_point(unit, window.start)
    end = format_point(unit, window.end, "end")
    where = "of every hour" if unit is HOUR else "of every minute"
    what = "minutes" if unit is HOUR else "seconds"
    if window.wraps:
        return f"{what} from {start} to {end} (across the turn) {where}"
    return f"{what} {start} to {end} {where}"


def explain(cond: BaseCondition) -> str | None:
    """How the times of ``cond`` are read, where that could surprise: times in an hourly
    or minutely phrase are minutes of the hour / seconds of the minute, as in Red Engine
    (``hourly between 09:00 and 17:00`` is minutes 9 to 17 of every hour). ``None`` when
    there is nothing to say. For the line that confirms a registration."""
    notes: list[str] = []
    for part in _parts(cond):
        window = None
        if isinstance(part, PeriodCondition | TimeCondition):
            window = part.window
        if window is None or window.unit not in (HOUR, MINUTE) or window.is_whole:
            continue
        note = f"'{part}' is {_span_text(window)}"
        # Whole minutes no later than 24: written as hours of the day, perhaps.
        looks_like_hours = window.start % 60 == 0 and window.end % 60 == 0
        if window.unit is HOUR and looks_like_hours and max(window.start, window.end) <= 1440:
            note += f"; {HOURS_OF_DAY_HINT}"
        notes.append(note)
    return "; ".join(notes) if notes else None
