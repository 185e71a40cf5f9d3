"""A wrong clock, corrected: records from the future must not silence tasks for years.

If the clock jumps ahead (+10 years for one step) and is then set right, the runs started
meanwhile are recorded in the future, and every condition that asks "has it run since..."
finds them: nothing would run until 2034. The session's :class:`ClockGuard` notices a
backward step larger than ``clock_step_tolerance`` (the clock's highest reading so far,
or the newest record of the run log at start, lies that far ahead of now), reports it
once (a warning in the scheduler log, ``Session.clock_step`` for the panel and the CLI),
and from then on gives the conditions a :class:`BoundedHistory`: the history as it would
be without the records later than ``now + tolerance``. Smaller steps change nothing: a
run recorded a minute ahead still counts, so nothing fires twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from ..records import Action
from ..runlog.base import History, RunLogBase

__all__ = ["BoundedHistory", "ClockGuard"]

log = logging.getLogger("redengine_nb.session")


class BoundedHistory:
    """``history`` without the records whose time is at or after ``bound``."""

    __slots__ = ("bound", "history")

    def __init__(self, history: RunLogBase, bound: float) -> None:
        self.history = history
        self.bound = bound

    def last(self, task: str, action: Action) -> float | None:
        value = self.history.last(task, action)
        if value is None or value < self.bound:
            return value
        return self.history.last_before(task, action, self.bound)

    def last_of(self, task: str, actions: Iterable[Action]) -> float | None:
        best: float | None = None
        for action in actions:
            t = self.last(task, action)
            if t is not None and (best is None or t > best):
                best = t
        return best

    def count(
        self,
        task: str,
        action: Action | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> int:
        until = self.bound if until is None else min(until, self.bound)
        return self.history.count(task, action, since, until)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.history, name)


class ClockGuard:
    """Watches the scheduler's clock for backward steps beyond ``tolerance()`` seconds."""

    def __init__(self, runlog: RunLogBase, tolerance: Callable[[], float]) -> None:
        self.runlog = runlog
        self._tolerance = tolerance
        self.high: float | None = None  # the latest instant seen: clock or run log
        #: The step reported, as text (``None``: no step beyond the tolerance so far).
        self.step: str | None = None

    def start(self, now: float) -> None:
        """At start: the newest record of the log counts as a clock reading."""
        try:
            newest = self.runlog.records(limit=1)
        except Exception:
            newest = []
        if newest:
            self.high = max(newest[0].created, newest[0].time)
        self.see(now)

    def see(self, now: float) -> None:
        high = self.high
        if high is None or now > high:
            self.high = now
            return
        if high - now > self._tolerance() and self.step is None:
            when = datetime.fromtimestamp(high, UTC).isoformat(timespec="seconds")
            self.step = (
                f"the clock went back {high - now:,.0f} s (from {when} UTC), more than "
                f"clock_step_tolerance ({self._tolerance():g} s): records after now + the "
                "tolerance are ignored by the conditions"
            )
            log.warning("%s", self.step)

    def history(self, now: float) -> History:
        """What the conditions read at ``now``: the run log, bounded after a big step."""
        if self.step is None or self.high is None:
            return self.runlog
        bound = now + self._tolerance()
        if self.high < bound:
            return self.runlog  # the future records are past now
        return BoundedHistory(self.runlog, bound)
