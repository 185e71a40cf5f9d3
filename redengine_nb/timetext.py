"""Reading and writing the small pieces of time text the library accepts.

Durations (``10 minutes``, ``1h30m``, ``90s``, ``1.5 hours``, ``01:30:00``), clock times
(``10:00``, ``10:00:30``, ``10am``, ``7:30pm``), weekdays (``Mon``, ``Monday``) and month
days (``1st``, ``15th``, ``15``). Each reader raises ``ValueError`` with a message that says
what is accepted; the condition parser turns it into a positioned ``ConditionParseError``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "MONTHS",
    "WEEKDAYS",
    "DurationError",
    "format_clock_time",
    "format_duration",
    "parse_clock_time",
    "parse_datetime",
    "parse_duration",
    "parse_month",
    "parse_monthday",
    "parse_weekday",
    "to_timedelta",
]

_UNIT_SECONDS: dict[str, float] = {}
for _names, _secs in (
    (("us", "micro", "micros", "microsecond", "microseconds"), 0.000001),
    (("ms", "milli", "millis", "millisecond", "milliseconds"), 0.001),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "week", "weeks"), 604800.0),
):
    for _n in _names:
        _UNIT_SECONDS[_n] = _secs

# One part of a duration: a number and its unit, then an optional comma (Red Engine's
# ``2 hours, 30 minutes``, as pandas.Timedelta reads it).
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]+)\s*(?:,\s*)?")
_HMS = re.compile(r"(\d+):(\d{2})(?::(\d{2}(?:\.\d+)?))?$")

DURATION_HELP = (
    "a duration such as '10 minutes', '1 hour 30 minutes', '2 hours, 30 minutes', '1h30m', "
    "'90s', '2 days', '1 week', '1.5 hours' or '01:30:00'"
)


class DurationError(ValueError):
    """A duration that does not parse; ``offset`` is where in the text the fault is."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise :class:`DurationError` (a ``ValueError``) saying what is
    accepted, with the offset of the faulty part in ``text``."""
    lead = len(text) - len(text.lstrip())
    raw = text.strip()
    if not raw:
        raise DurationError(f"empty duration; expected {DURATION_HELP}")
    total = 0.0
    pos = 0
    while pos < len(raw):
        hms = _HMS.match(raw, pos)
        if hms is not None:  # 01:30:00, alone or after days (pandas' '1 days 02:00:00')
            hours, minutes = int(hms.group(1)), int(hms.group(2))
            seconds = float(hms.group(3) or 0)
            if minutes >= 60 or seconds >= 60:
                raise DurationError(
                    f"bad duration {raw!r}: minutes and seconds must be below 60", lead + pos
                )
            total += hours * 3600 + minutes * 60 + seconds
            break
        part = _DURATION_PART.match(raw, pos)
        if part is None:
            raise DurationError(f"bad duration {raw!r}; expected {DURATION_HELP}", lead + pos)
        unit = part.group(2).lower()
        if unit not in _UNIT_SECONDS:
            raise DurationError(
                f"unknown time unit {part.group(2)!r} in duration {raw!r}; "
                "use seconds, minutes, hours, days or weeks",
                lead + part.start(2),
            )
        total += float(part.group(1)) * _UNIT_SECONDS[unit]
        pos = part.end()
    return timedelta(seconds=total)


def to_timedelta(value: str | float | int | timedelta) -> timedelta:
    """A duration from text, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(
        f"not a duration: {value!r}; expected {DURATION_HELP}, a number of seconds or a timedelta"
    )


def format_duration(value: timedelta) -> str:
    """Canonical text of a duration (``90 seconds`` → ``1 minute 30 seconds``)."""
    total = value.total_seconds()
    if total == 0:
        return "0 seconds"
    parts: list[str] = []
    whole = int(total)
    frac = round(total - whole, 6)
    for name, size in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    seconds: float = whole + frac
    if seconds:
        text = f"{seconds:g}" if frac else str(int(seconds))
        parts.append(f"{text} second{'s' if seconds != 1 else ''}")
    return " ".join(parts)


_CLOCK = re.compile(
    r"^(?P<h>\d{1,2})(?::(?P<m>\d{2})(?::(?P<s>\d{2}))?)?\s*(?P<ampm>[ap]\.?m\.?)?$",
    re.IGNORECASE,
)

CLOCK_HELP = "a clock time such as '10:00', '10:00:30', '10am' or '7:30pm'"


def parse_clock_time(text: str, *, allow_24: bool = True) -> int:
    """Seconds after midnight of a clock time. ``24:00`` is accepted as the end of a day."""
    raw = text.strip()
    m = _CLOCK.match(raw)
    if m is None or (m.group("m") is None and m.group("ampm") is None):
        raise ValueError(f"bad time {raw!r}; expected {CLOCK_HELP}")
    hour = int(m.group("h"))
    minute = int(m.group("m") or 0)
    second = int(m.group("s") or 0)
    ampm = (m.group("ampm") or "").lower().replace(".", "")
    if ampm:
        if not 1 <= hour <= 12:
            raise ValueError(f"bad time {raw!r}: with am/pm the hour must be 1 to 12")
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if minute >= 60 or second >= 60:
        raise ValueError(f"bad time {raw!r}: minutes and seconds must be below 60")
    if hour == 24 and minute == 0 and second == 0 and allow_24:
        return 86400
    if hour >= 24:
        raise ValueError(
            f"bad time {raw!r}: the hour must be 0 to 23 (or 24:00 for the end of a day)"
        )
    return hour * 3600 + minute * 60 + second


def format_clock_time(seconds: int) -> str:
    """``HH:MM`` or ``HH:MM:SS`` for seconds after midnight."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def parse_weekday(text: str) -> int:
    """0 for Monday … 6 for Sunday, from ``Mon`` or ``Monday`` (any case)."""
    raw = text.strip().lower()
    for index, name in enumerate(WEEKDAYS):
        if raw in (name.lower(), name[:3].lower()):
            return index
    raise ValueError(
        f"bad weekday {text.strip()!r}; expected one of "
        + ", ".join(WEEKDAYS)
        + " (or their first three letters)"
    )


MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def parse_month(text: str) -> int:
    """0 for January … 11 for December, from ``Jan`` or ``January`` (any case)."""
    raw = text.strip().lower()
    for index, name in enumerate(MONTHS):
        if raw in (name.lower(), name[:3].lower()):
            return index
    raise ValueError(
        f"bad month {text.strip()!r}; expected one of "
        + ", ".join(MONTHS)
        + " (or their first three letters)"
    )


_MONTHDAY = re.compile(r"^(\d{1,2})(st|nd|rd|th)?$", re.IGNORECASE)


def parse_monthday(text: str) -> int:
    """Day of month 1–31 from ``1st``, ``15th`` or ``15``."""
    m = _MONTHDAY.match(text.strip())
    if m is None or not 1 <= int(m.group(1)) <= 31:
        raise ValueError(
            f"bad day of month {text.strip()!r}; expected 1 to 31, written '15', '1st' or '15th'"
        )
    return int(m.group(1))


def parse_datetime(value: str | datetime, tz: ZoneInfo) -> datetime:
    """An aware datetime from ISO-like text (``2024-03-10 09:00``) or a datetime.

    Naive values are read as wall time in ``tz``.
    """
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"bad date and time {value!r}; expected e.g. '2024-03-10 09:00' "
                "or '2024-03-10T09:00:00+02:00'"
            ) from None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=tz)
    return dt.astimezone(tz)
