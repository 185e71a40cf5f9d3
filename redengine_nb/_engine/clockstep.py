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

The warning lasts as long as its effect: once the clock has caught up with the future
records (``now + tolerance`` passes the highest reading), they count again, the history
is no longer bounded and the warning clears itself (logged). A user who has read it can
dismiss it sooner (``Session.dismiss_clock_step()``, the panel's ✕): that hides the text
only, the records stay ignored until the clock catches up, and a new step is reported
again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from ..records import Action
from ..runlog.base import History, RunLogBase, newest

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
        return newest(self.last, task, actions)

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
        #: The step in effect, as text (``None``: none, or the clock has caught up).
        self.in_effect: str | None = None
        self._dismissed = False
        #: Called when the warning appears or clears (the session emits
        #: ``warning_changed``).
        self.on_step: Callable[[], None] | None = None

    @property
    def step(self) -> str | None:
        """The warning to show: the step in effect, unless the user dismissed it."""
        return None if self._dismissed else self.in_effect

    def dismiss(self) -> bool:
        """Hide the warning of the step in effect (its records stay ignored until the
        clock catches up). False when there was nothing to dismiss."""
        if self.in_effect is None or self._dismissed:
            return False
        self._dismissed = True
        log.info(
            "clock step warning dismissed (records after now + the tolerance are "
            "still ignored until the clock catches up)"
        )
        self._changed()
        return True

    def _changed(self) -> None:
        if self.on_step is not None:
            self.on_step()

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
            if self.in_effect is not None:
                self._caught_up()
            return
        behind = high - now
        if behind <= self._tolerance():
            if self.in_effect is not None:
                self._caught_up()
        elif self.in_effect is None:
            when = datetime.fromtimestamp(high, UTC).isoformat(timespec="seconds")
            self.in_effect = (
                f"the clock went back {behind:,.0f} s (from {when} UTC), more than "
                f"clock_step_tolerance ({self._tolerance():g} s): records after now + the "
                "tolerance are ignored by the conditions"
            )
            self._dismissed = False
            log.warning("%s", self.in_effect)
            self._changed()

    def _caught_up(self) -> None:
        self.in_effect = None
        self._dismissed = False
        log.info("the clock has caught up with the records of the earlier step: they count again")
        self._changed()

    def history(self, now: float) -> History:
        """What the conditions read at ``now``: the run log, bounded after a big step."""
        if self.in_effect is None or self.high is None:
            return self.runlog
        bound = now + self._tolerance()
        if self.high < bound:
            return self.runlog  # the future records are past now
        return BoundedHistory(self.runlog, bound)
