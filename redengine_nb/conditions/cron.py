"""The next minute a cron expression matches, by arithmetic on the wall time where that is
safe and by croniter elsewhere; croniter imported at the first cron condition. Moved out of
``time.py`` (the ``Cron`` condition stays there)."""

from __future__ import annotations

import bisect
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from .base import to_datetime


def _dt(ts: float, tz: tzinfo | None) -> datetime:
    return to_datetime(ts, tz)


def _croniter() -> Any:
    """croniter, imported at the first cron condition: with dateutil it costs ~12 ms and
    ~1.5 MiB that an engine without cron phrases never needs."""
    from croniter import croniter

    return croniter


class _CronFields:
    """A cron expression's allowed values, to find the next matching minute by
    arithmetic (croniter took ~140 us per next match, 11x APScheduler's CronTrigger).
    Only plain fields: an expression with croniter's extensions (``L``, ``#``, ...) has
    no ``_CronFields`` and croniter answers for it."""

    __slots__ = ("days", "hours", "minutes", "months", "weekdays")

    def __init__(self, expanded: list[list[Any]]) -> None:
        minutes, hours, days, months, weekdays = expanded
        star = ["*"]
        if any(not isinstance(v, int) for f in expanded if f != star for v in f):
            raise ValueError("not a plain field")
        self.minutes = list(range(60)) if minutes == star else sorted(minutes)
        self.hours = list(range(24)) if hours == star else sorted(hours)
        self.months = None if months == star else frozenset(months)
        # croniter's rule: with both day fields given, a day matching either matches.
        day_set = None if days == star else frozenset(days)
        week_set = None if weekdays == star else frozenset(v % 7 for v in weekdays)
        self.days = day_set
        self.weekdays = week_set

    def _day_ok(self, d: date) -> bool:
        if self.months is not None and d.month not in self.months:
            return False
        days, weekdays = self.days, self.weekdays
        if days is None and weekdays is None:
            return True
        if days is not None and d.day in days:
            return True
        return weekdays is not None and (d.weekday() + 1) % 7 in weekdays

    def matches(self, wall: datetime) -> bool:
        """Whether the minute of ``wall`` (its wall-clock fields) matches."""
        minutes, hours = self.minutes, self.hours
        i = bisect.bisect_left(minutes, wall.minute)
        if i == len(minutes) or minutes[i] != wall.minute:
            return False
        i = bisect.bisect_left(hours, wall.hour)
        if i == len(hours) or hours[i] != wall.hour:
            return False
        return self._day_ok(wall.date())

    def after(self, wall: datetime) -> datetime | None:
        """The first matching minute strictly after the minute of ``wall`` (naive wall
        time), or None if none comes within ~14 months (croniter decides then)."""
        hours, minutes = self.hours, self.minutes
        d = wall.date()
        h, m = wall.hour, wall.minute + 1
        if m == 60:
            h, m = h + 1, 0
        for _ in range(430):
            if h < 24 and self._day_ok(d):
                i = bisect.bisect_left(hours, h)
                while i < len(hours):
                    hour = hours[i]
                    j = bisect.bisect_left(minutes, m) if hour == h else 0
                    if j < len(minutes):
                        return datetime(d.year, d.month, d.day, hour, minutes[j])
                    i += 1
            d += timedelta(days=1)
            h, m = 0, 0
        return None


_CRON_FIELDS: dict[str, _CronFields | None] = {}


def _cron_fields(expression: str) -> _CronFields | None:
    fields = _CRON_FIELDS.get(expression, False)
    if fields is False:
        try:
            fields = _CronFields(_croniter()(expression).expanded)
        except (ValueError, TypeError):
            fields = None
        if len(_CRON_FIELDS) > 1024:
            _CRON_FIELDS.clear()
        _CRON_FIELDS[expression] = fields
    return fields  # type: ignore[return-value]


def _cron_next(expression: str, base: float, tz: tzinfo | None) -> float:
    """The start of the first minute matching ``expression`` after epoch seconds ``base``
    in zone ``tz``, as croniter's ``get_next`` says. By arithmetic on the wall time when
    the zone's offset is that of ``base`` for hours around both instants (no wall time
    there is ambiguous or missing); croniter, and its DST rules, otherwise."""
    fields = _cron_fields(expression)
    here = _dt(base, tz)
    if fields is not None and tz is not None:
        found = fields.after(here)
        off = here.utcoffset()
        if found is not None and off is not None:
            ts = (found - _EPOCH).total_seconds() - off.total_seconds()
            if _plain(tz, base, off) and _plain(tz, ts, off):
                return ts
    nxt = _croniter()(expression, here).get_next(datetime)
    assert isinstance(nxt, datetime)
    return float(nxt.timestamp())


_EPOCH = datetime(1970, 1, 1)
_WEEK = 7 * 86400
_PLAIN: dict[tuple[tzinfo, int], Any] = {}


def _plain(tz: tzinfo, ts: float, off: timedelta) -> bool:
    """True when ``tz``'s offset is ``off`` for 3 hours either side of ``ts``: its wall
    time there is neither missing nor ambiguous. Known per week: a week whose ends have
    the same offset has no change inside (no zone changes twice within a week)."""
    for at in (ts - 10800, ts + 10800):
        week = int(at // _WEEK)
        key = (tz, week)
        known = _PLAIN.get(key, False)
        if known is False:
            first = _dt(week * _WEEK, tz).utcoffset()
            known = first if first == _dt(week * _WEEK + _WEEK, tz).utcoffset() else None
            if len(_PLAIN) > 4096:
                _PLAIN.clear()
            _PLAIN[key] = known
        if known != off:
            return False
    return True
