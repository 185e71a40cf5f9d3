"""Points and windows inside a unit, as a period phrase writes them (``45:00`` of the hour,
``Tue 10:00`` of the week, ``Mar 5th`` of the year): parsed into offsets and windows, and
written back. Moved out of ``time.py``; that module re-exports the public names."""

from __future__ import annotations

import re
from bisect import bisect_right

from ..timetext import (
    MONTHS,
    WEEKDAYS,
    format_clock_time,
    parse_clock_time,
    parse_month,
    parse_monthday,
    parse_weekday,
)
from .periods import (
    DAY,
    HOUR,
    MINUTE,
    MONTH,
    SECOND,
    WEEK,
    YEAR,
    YEAR_MONTH_STARTS,
    TimeWindow,
    Unit,
)

# -- points inside a unit ----------------------------------------------------------------
# Times are written in the unit of the period, as Red Engine writes them: seconds of the
# minute (``15``), minutes and seconds of the hour (``45:00``), a clock time of the day, a
# weekday (with a clock time: ``Tue 10:00``), a day of the month (``13th``, ``1.``, with a
# clock time: ``10th 12:30``). The ``:15`` forms are this project's older spelling.
# Red Engine also writes a fraction of a second ('15.00', '45:00.000'); windows here are
# whole seconds, so a fraction must be zero.
_SECOND_OF_MINUTE = re.compile(r"^:?(\d{1,2})(?:\.0{1,6})?$")
_MINUTE_OF_HOUR = re.compile(r"^(\d{2}):(\d{2})(?:\.0{1,6})?$|^:(\d{2})(?::(\d{2}))?$")
_QUARTER = re.compile(r"^([0-4])\s*(?:quarters?|q)$", re.IGNORECASE)
_DOT_TIME = re.compile(r"^(\d{1,2})\.(\d{2})$")
_CLOCK_LIKE = re.compile(r"^\d{1,2}(?:[:.]\d{2}(?::\d{2})?)?\s*(?:[ap]\.?m\.?)?$", re.IGNORECASE)
HOURS_OF_DAY_HINT = "for hours of the day write 'hourly & time of day between 09:00 and 17:00'"
_POINT_HELP = {
    SECOND: "nothing: 'secondly' is whole seconds (it takes no window and no 'starting')",
    MINUTE: "a second of the minute such as '15' or '45'",
    HOUR: "minutes:seconds of the hour such as '45:00' (quarter to) or '1 quarter'",
    DAY: "a clock time such as '10:00', '10:00:30', '10am' or '7:30pm'",
    WEEK: "a weekday such as 'Mon' or 'Monday', optionally with a time ('Tue 10:00')",
    MONTH: "a day of the month such as '1st', '15th', '15' or '1.', optionally with a time "
    "('10th 12:30')",
    YEAR: "a month such as 'Mar' or 'March', optionally with a day and a time ('Mar 5th', "
    "'Dec 24th 18:00')",
}


def _bad_point(unit: Unit, raw: str) -> ValueError:
    text = f"bad point {raw!r}; expected {_POINT_HELP[unit]}"
    if unit is HOUR and _CLOCK_LIKE.match(raw):
        text += (
            f" (times of 'hourly' and 'time of hour' are minutes of the hour; {HOURS_OF_DAY_HINT})"
        )
    return ValueError(text)


def _day_time(raw: str, role: str) -> int:
    dot = _DOT_TIME.match(raw)
    if dot is not None:
        raw = f"{dot.group(1)}:{dot.group(2)}"
    return parse_clock_time(raw, allow_24=role != "start")


def parse_point(unit: Unit, text: str, role: str = "start") -> int:
    """Offset (seconds) of a point inside ``unit``. ``role``: ``start``, or ``end`` /
    ``before`` (the end of a window: a day named without a time counts whole, as in Red
    Engine, so ``before Friday`` includes Friday)."""
    raw = " ".join(text.split())
    if unit is SECOND:
        raise ValueError(f"no point {raw!r} inside a second; {_POINT_HELP[SECOND]}")
    if unit is MINUTE:
        m = _SECOND_OF_MINUTE.match(raw)
        if m is None:
            raise _bad_point(unit, raw)
        value = int(m.group(1))
        if value > 60 or (value == 60 and role == "start"):
            raise _bad_point(unit, raw)
        return value
    if unit is HOUR:
        q = _QUARTER.match(raw)
        if q is not None:
            value = int(q.group(1)) * 900
        else:
            m = _MINUTE_OF_HOUR.match(raw)
            if m is None:
                raise _bad_point(unit, raw)
            minute = int(m.group(1) or m.group(3))
            second = int(m.group(2) or m.group(4) or 0)
            if second >= 60:
                raise _bad_point(unit, raw)
            value = minute * 60 + second
        if value > 3600 or (value == 3600 and role == "start"):
            raise _bad_point(unit, raw)
        return value
    if unit is DAY:
        return _day_time(raw, role)
    if unit is YEAR:
        return _year_point(raw, role)
    day, _, clock = raw.partition(" ")
    if unit is WEEK:
        index = parse_weekday(day)
    else:
        m = _MONTHDAY_DOT.match(day)
        index = parse_monthday(m.group(1) if m else day) - 1
    if clock:
        return index * 86400 + _day_time(clock, "start")
    return (index + 1) * 86400 if role in ("end", "before") else index * 86400


_MONTHDAY_DOT = re.compile(r"^(\d{1,2})\.$")


def _year_point(raw: str, role: str) -> int:
    """A point of the year (Rocketry's TimeOfYear spelling): ``Mar`` (as an end, the whole
    of March), ``Mar 5th`` (as an end, the whole day, as for a day of the month),
    ``Mar 5th 10:00``. Offsets are on the leap-year axis, so ``Feb 29th`` is accepted."""
    month_text, _, rest = raw.partition(" ")
    try:
        month = parse_month(month_text)
    except ValueError:
        raise _bad_point(YEAR, raw) from None
    first = YEAR_MONTH_STARTS[month] * 86400
    if not rest:
        return YEAR_MONTH_STARTS[month + 1] * 86400 if role in ("end", "before") else first
    offset = parse_point(MONTH, rest, role)
    days = YEAR_MONTH_STARTS[month + 1] - YEAR_MONTH_STARTS[month]
    if offset > days * 86400 or (offset == days * 86400 and role == "start"):
        raise ValueError(f"bad point {raw!r}: {MONTHS[month]} has {days} days")
    return first + offset


def _format_year_point(offset: int, role: str) -> str:
    days, clock = divmod(offset, 86400)
    month = bisect_right(YEAR_MONTH_STARTS, days) - 1
    day = days - YEAR_MONTH_STARTS[month]
    if role == "end" and offset == 0:
        return f"Jan 1st {format_clock_time(0)}"  # not 'Dec', which reads as the year's end
    if role == "end" and clock == 0:
        if day == 0:
            return MONTHS[month - 1][:3]  # the end of the month before: the whole of it
        return f"{MONTHS[month][:3]} {_ordinal(day)}"  # a whole day, as written
    if day == 0 and clock == 0 and role != "day":
        return MONTHS[month][:3]
    text = f"{MONTHS[month][:3]} {_ordinal(day + 1)}"
    return text if clock == 0 else f"{text} {format_clock_time(clock)}"


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def format_point(unit: Unit, offset: int, role: str = "start") -> str:
    if unit is MINUTE:
        return f"{offset:02d}"
    if unit is HOUR:
        minutes, seconds = divmod(offset, 60)
        return f"{minutes:02d}:{seconds:02d}"
    if unit is DAY:
        return format_clock_time(offset)
    if unit is YEAR:
        return _format_year_point(offset, role)
    days, clock = divmod(offset, 86400)
    whole_end = role == "end" and clock == 0
    index = days - 1 if whole_end else days
    text = WEEKDAYS[index % 7] if unit is WEEK else _ordinal(index % 31 + 1)
    return text if clock == 0 else f"{text} {format_clock_time(clock)}"


def window_between(unit: Unit, a: str, b: str) -> TimeWindow:
    return TimeWindow(unit, parse_point(unit, a), parse_point(unit, b, "end"))


def window_after(unit: Unit, a: str) -> TimeWindow:
    return TimeWindow(unit, parse_point(unit, a), unit.length)


def window_before(unit: Unit, b: str) -> TimeWindow:
    """From the start of the unit to ``b`` (``before 00:00`` is the whole unit, as in Red
    Engine and Rocketry: a window that starts where it ends is a whole cycle)."""
    return TimeWindow(unit, 0, parse_point(unit, b, "before"))


_ON_LENGTH = {MINUTE: 1, HOUR: 60, DAY: 3600, WEEK: 86400, MONTH: 86400}


def window_on(unit: Unit, x: str) -> TimeWindow:
    if unit is YEAR:
        # 'on Mar' is the month, 'on Mar 5th' the day (Rocketry has the month only).
        start = parse_point(unit, x)
        if len(x.split()) == 1:
            return TimeWindow(unit, start, parse_point(unit, x, "end"))
        end = start + 86400  # a day; from a time on the 31st of December, into January
        return TimeWindow(unit, start, end - unit.length if end > unit.length else end)
    start = parse_point(unit, x)
    end = start + _ON_LENGTH[unit]
    if unit is not MONTH and end > unit.length:
        end -= unit.length
    return TimeWindow(unit, start, end)


def format_window(window: TimeWindow) -> str:
    """``between A and B`` / ``after A`` / ``before B`` / ``on X`` (empty for a whole unit)."""
    unit, start, end = window.unit, window.start, window.end
    if window.is_whole and start == 0:
        return ""
    if unit in (WEEK, MONTH, YEAR) and not window.wraps and end - start == 86400:
        return f"on {format_point(unit, start, 'day')}"
    if unit is YEAR and not window.wraps and start % 86400 == 0 and end % 86400 == 0:
        month = bisect_right(YEAR_MONTH_STARTS, start // 86400) - 1
        if (
            start // 86400 == YEAR_MONTH_STARTS[month]
            and end // 86400 == YEAR_MONTH_STARTS[month + 1]
        ):
            return f"on {format_point(unit, start)}"
    if start == 0 and not window.wraps:
        return f"before {format_point(unit, end, 'end')}"
    if end == unit.length and not window.wraps:
        return f"after {format_point(unit, start)}"
    return f"between {format_point(unit, start)} and {format_point(unit, end, 'end')}"
