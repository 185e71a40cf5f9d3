"""The one source of time for everything in redengine_nb.

A clock gives the current instant as an aware ``datetime`` in its timezone and as epoch
seconds. The scheduler, the conditions and the run log read time only from here, so that a
:class:`redengine_nb.testing.FakeClock` can drive days of schedule in milliseconds.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Clock", "SystemClock", "get_zone", "local_zone"]


class Clock(ABC):
    """The base of every clock: what the scheduler needs of one, with the defaults written
    once. A clock is made with its timezone and gives :meth:`time`; :meth:`now` follows
    from them. :meth:`subscribe` keeps callbacks that a clock which moves on request (a
    fake one) calls through :meth:`_notify` when it is set.
    """

    def __init__(self, tz: str | ZoneInfo | None = None) -> None:
        if tz is None:
            self._tz = local_zone()
        elif isinstance(tz, ZoneInfo):
            self._tz = tz
        else:
            self._tz = get_zone(tz)
        self._callbacks: list[Callable[[], None]] = []

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    @abstractmethod
    def time(self) -> float:
        """The current instant as seconds since the epoch."""

    def now(self) -> datetime:
        """The current instant, aware, in :attr:`tz`."""
        return datetime.fromtimestamp(self.time(), self._tz)

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever time moves other than by itself (a fake clock is set)."""
        self._callbacks.append(callback)

    def _notify(self) -> None:
        for callback in list(self._callbacks):
            callback()


def get_zone(name: str) -> ZoneInfo:
    """A ``ZoneInfo`` by IANA name, with an error that says what is accepted."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r}; expected an IANA name such as 'UTC', "
            "'Europe/Helsinki' or 'America/New_York'"
        ) from None


def local_zone() -> ZoneInfo:
    """The machine's timezone as a ``ZoneInfo`` (``TZ``, then ``/etc/localtime``), else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    etc_tz = Path("/etc/timezone")
    try:
        text = etc_tz.read_text().strip()
        if text:
            return ZoneInfo(text)
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "zoneinfo/"
        if marker in target:
            return ZoneInfo(target.split(marker, 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    return ZoneInfo("UTC")


class SystemClock(Clock):
    """The real clock, in a given timezone (default: the machine's)."""

    def now(self) -> datetime:
        return datetime.now(self._tz)

    def time(self) -> float:
        return time.time()

    def subscribe(self, callback: Callable[[], None]) -> None:
        """The real clock never jumps on request: nothing to tell, nothing kept."""

    def __repr__(self) -> str:
        return f"SystemClock(tz={self._tz.key!r})"
