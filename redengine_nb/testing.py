"""Public helpers for testing code that uses redengine_nb.

:class:`FakeClock` stands in for the real clock: time moves only when the test says so,
and a scheduler driven by ``session.tick()`` runs days of schedule in milliseconds::

    from redengine_nb.testing import FakeClock
    clock = FakeClock('2024-03-10 09:00', tz='Europe/Helsinki')
    app = RedEngine(clock=clock, logs=':memory:')
    clock.advance('10 minutes')
    app.session.tick()
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from .clock import Clock, get_zone
from .timetext import parse_datetime, to_timedelta

__all__ = ["FakeClock"]


class FakeClock(Clock):
    """A clock that stands still until it is told to move.

    ``FakeClock('2024-03-10 09:00', tz='Europe/Helsinki')``: naive text is wall time in
    ``tz``. ``advance('10 minutes')`` (also seconds or a ``timedelta``) moves it by elapsed
    time, so DST changes happen as they would. ``set(...)`` jumps to any instant, backward
    too. Thread safe; subscribers (a running scheduler) are woken at each move.
    """

    def __init__(
        self, start: str | datetime = "2024-01-01 00:00", tz: str | ZoneInfo = "UTC"
    ) -> None:
        super().__init__(tz if isinstance(tz, ZoneInfo) else get_zone(tz))
        self._lock = threading.Lock()
        self._ts = parse_datetime(start, self._tz).timestamp()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._ts, self._tz)

    def time(self) -> float:
        return self._ts

    def advance(self, amount: str | float | int | timedelta) -> datetime:
        """Move forward by elapsed time; return the new now."""
        delta = to_timedelta(amount).total_seconds()
        if delta < 0:
            raise ValueError(f"advance() moves forward only; got {amount!r}. Use set() to go back.")
        with self._lock:
            self._ts += delta
        self._notify()
        return self.now()

    def set(self, when: str | datetime) -> datetime:
        """Jump to an instant (naive text is wall time in the clock's timezone)."""
        with self._lock:
            self._ts = parse_datetime(when, self._tz).timestamp()
        self._notify()
        return self.now()

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()!r}, tz={self._tz.key!r})"
