"""Conditions on the run history: ``has succeeded today``, ``after task 'x'``, ``is running``.

Every lookup goes through :class:`~redengine_nb.runlog.base.History` (``last`` and
``count``), which stores answer from an index; nothing here scans records.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from ..records import Action
from ..runlog.base import History, last_of
from ..timetext import format_duration, to_timedelta
from .base import BaseCondition, Context
from .periods import TimeWindow
from .points import format_point, format_window
from .time import (
    UNIT_NAMES,
    _Span,
    _window_segment,
    _Windowed,
    quantize,
)

__all__ = ["VERBS", "After", "HasAction", "Retry", "Running", "quote_name"]

#: The verbs of ``has <verb>`` and the actions each one counts.
VERBS: dict[str, tuple[Action, ...]] = {
    "succeeded": (Action.SUCCESS,),
    "failed": (Action.FAIL,),
    # Red Engine's and Rocketry's TaskFinished: an inaction is not a finish here (it is
    # for a period condition such as 'daily', which it satisfies).
    "finished": (Action.FAIL, Action.SUCCESS, Action.TERMINATE),
    "started": (Action.RUN,),
    "terminated": (Action.TERMINATE,),
    "inacted": (Action.INACTION,),
    "crashed": (Action.CRASH,),
}

#: ``after task 'x' <verb>``: the verbs allowed there, and the actions each one waits for
#: (Red Engine's and Rocketry's DependFinish: a success or a failure).
AFTER_VERBS = ("succeeded", "failed", "finished")
AFTER_ACTIONS: dict[str, tuple[Action, ...]] = {
    "succeeded": (Action.SUCCESS,),
    "failed": (Action.FAIL,),
    "finished": (Action.FAIL, Action.SUCCESS),
}

_SPAN_WORDS = {
    "minute": "this minute",
    "hour": "this hour",
    "day": "today",
    "week": "this week",
    "month": "this month",
}


def quote_name(name: str) -> str:
    """A task name as condition text: in ``'`` quotes, or ``"`` when the name holds a ``'``.
    A name holding both is put in ``'`` quotes with each ``'`` doubled (``'it''s "x"'``)."""
    if "'" not in name:
        return f"'{name}'"
    if '"' not in name:
        return f'"{name}"'
    return "'" + name.replace("'", "''") + "'"


def _newest(history: History, task: str, actions: tuple[Action, ...]) -> float | None:
    """The newest record of ``actions``: one ``last`` for one action (the common case,
    and the cheapest call), else :func:`last_of`."""
    if len(actions) == 1:
        return history.last(task, actions[0])
    return last_of(history, task, actions)


def _task_prefix(task: str | None) -> str:
    return "" if task is None else f"task {quote_name(task)} "


class HasAction(_Windowed):
    """``[task 'x'] has <verb> [today | this hour | ... [window] | in past <duration>]``."""

    __slots__ = ("actions", "span", "task", "verb")

    def __init__(
        self, verb: str, task: str | None = None, span: TimeWindow | timedelta | str | None = None
    ) -> None:
        super().__init__()
        if verb not in VERBS:
            raise ValueError(f"unknown verb {verb!r}; expected one of {', '.join(VERBS)}")
        if isinstance(span, str):
            span = to_timedelta(span)
        if isinstance(span, timedelta) and span.total_seconds() <= 0:
            raise ValueError(f"'in past' needs a positive duration, got {format_duration(span)!r}")
        if isinstance(span, TimeWindow) and span.start == 0 and span.is_whole:
            span = TimeWindow(span.unit)  # today, this hour, ... (an anchored one stays)
        self.verb = verb
        self.actions = VERBS[verb]
        self.task = task
        self.span: TimeWindow | timedelta | None = span

    def _compute(self, now: datetime) -> _Span:
        assert isinstance(self.span, TimeWindow)
        if self.span.is_whole:
            occ = self.span.rollback(now)
            return occ.start_ts, occ.end_ts, occ.start_ts, None
        # After the window: the span is the window that just closed (from ``since`` to the
        # segment's start), until the next opens.
        return _window_segment(self.span, now)

    def _window_key(self) -> tuple[object, ...]:
        return (HasAction, self.span)

    def _met_at(self, ctx: Context, ts: float) -> bool:
        name = ctx.task_name(self.task)
        last = _newest(ctx.history, name, self.actions)
        if last is None:
            return False
        span = self.span
        if span is None:
            return True
        if isinstance(span, timedelta):
            return last >= ts - span.total_seconds()
        _, until, _hi, start, since = self._segment_at(ctx, ts)
        if start is not None:
            return last >= start
        assert since is not None
        return any(ctx.history.count(name, a, since, until) for a in self.actions)

    def is_met(self, ctx: Context) -> bool:
        return self._met_at(ctx, ctx.ts)

    def clock_free(self) -> bool:
        return self.span is None

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        return ts if self._met_at(ctx, ts) else None

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        if not self._met_at(ctx, ts):
            return ts
        span = self.span
        if span is None:
            return None
        if isinstance(span, timedelta):
            last = _newest(ctx.history, ctx.task_name(self.task), self.actions)
            assert last is not None
            return quantize(last + span.total_seconds())
        return self._segment_at(ctx, ts)[2]

    def next_due(self, ctx: Context) -> datetime | None:
        return ctx.now if self.is_met(ctx) else None

    def next_undue(self, ctx: Context) -> datetime | None:
        return ctx.when(self._undue_at(ctx, ctx.ts))

    def in_past(self, duration: str | timedelta) -> HasAction:
        return HasAction(self.verb, self.task, to_timedelta(duration))

    def in_span(self, window: TimeWindow) -> HasAction:
        return HasAction(self.verb, self.task, window)

    def __str__(self) -> str:
        text = f"{_task_prefix(self.task)}has {self.verb}"
        span = self.span
        if span is None:
            return text
        if isinstance(span, timedelta):
            return f"{text} in past {format_duration(span)}"
        text = f"{text} {_SPAN_WORDS[UNIT_NAMES[span.unit][1]]}"
        if span.is_whole and span.start:
            return f"{text} starting {format_point(span.unit, span.start)}"
        rest = format_window(span)
        return f"{text} {rest}" if rest else text

    def _key(self) -> tuple[object, ...]:
        return (self.verb, self.task, self.span)


class _EventOnly(BaseCondition):
    """A condition only run events change: as true (or false) at any later instant as
    now, so due now if met, else not before an event."""

    __slots__ = ()

    def clock_free(self) -> bool:
        return True

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        return ts if self.is_met(ctx) else None

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        return None if self.is_met(ctx) else ts


class After(_EventOnly):
    """``after task 'x' [succeeded|failed|finished]``, ``after tasks 'a', 'b'``,
    ``after any tasks 'a', 'b'``: their last such record is newer than this task's last
    start (or this task never started)."""

    __slots__ = ("actions", "any", "tasks", "verb")

    def __init__(
        self, tasks: str | Iterable[str], verb: str = "succeeded", any: bool = False
    ) -> None:
        names = (tasks,) if isinstance(tasks, str) else tuple(tasks)
        if not names:
            raise ValueError("'after' needs at least one task name")
        if verb not in AFTER_VERBS:
            raise ValueError(f"'after task' takes {', '.join(AFTER_VERBS)}; got {verb!r}")
        self.tasks = names
        self.verb = verb
        self.actions = AFTER_ACTIONS[verb]
        self.any = any and len(names) > 1

    def is_met(self, ctx: Context) -> bool:
        history = ctx.history
        task = ctx.task
        mine = history.last(task if task is not None else ctx.task_name(None), Action.RUN)
        actions = self.actions
        for name in self.tasks:
            theirs = _newest(history, name, actions)
            ok = theirs is not None and (mine is None or theirs > mine)
            if ok and self.any:
                return True
            if not ok and not self.any:
                return False
        return not self.any

    def __str__(self) -> str:
        if len(self.tasks) == 1:
            text = f"after task {quote_name(self.tasks[0])}"
        else:
            names = ", ".join(quote_name(n) for n in self.tasks)
            text = f"after {'any ' if self.any else ''}tasks {names}"
        return text if self.verb == "succeeded" else f"{text} {self.verb}"

    def _key(self) -> tuple[object, ...]:
        return (self.tasks, self.verb, self.any)


class Running(_EventOnly):
    """``[task 'x'] is running``: a run of x (or this task) is alive."""

    __slots__ = ("task",)

    def __init__(self, task: str | None = None) -> None:
        self.task = task

    def is_met(self, ctx: Context) -> bool:
        return ctx.is_running(ctx.task_name(self.task))

    def __str__(self) -> str:
        return f"{_task_prefix(self.task)}is running"

    def _key(self) -> tuple[object, ...]:
        return (self.task,)


#: What ends a streak of failures for :class:`Retry`: any other final action (Rocketry's).
_NOT_FAIL = (Action.SUCCESS, Action.CRASH, Action.INACTION, Action.TERMINATE)


class Retry(_EventOnly):
    """``retry`` / ``retry 3 times`` (Rocketry's ``retry(n)``): the task's last run failed
    and it has failed at most ``n`` times in a row (since its last success, crash, inaction
    or termination), so a failure is followed by up to ``n`` more runs. ``retry`` alone
    retries forever; ``retry 0 times`` never. Combine it with the schedule:
    ``daily | retry 3 times``."""

    __slots__ = ("times",)

    def __init__(self, times: int | None = None) -> None:
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 0
        ):
            raise ValueError(
                f"'retry' takes a whole number of times, 0 or more (or none: forever); "
                f"got {times!r}"
            )
        self.times = times

    def __call__(self, times: int | None = None) -> Retry:
        """``retry(3)``: the Python spelling, as in Rocketry."""
        return Retry(times)

    def is_met(self, ctx: Context) -> bool:
        if self.times == 0:
            return False
        history = ctx.history
        task = ctx.task_name(None)
        fail = history.last(task, Action.FAIL)
        if fail is None:
            return False
        other = last_of(history, task, _NOT_FAIL)
        start = history.last(task, Action.RUN)
        if (other is not None and other > fail) or (start is not None and start > fail):
            return False  # the newest record is not that failure: nothing to retry
        if self.times is None:
            return True
        return history.count(task, Action.FAIL, since=other) <= self.times

    def __str__(self) -> str:
        if self.times is None:
            return "retry"
        return f"retry {self.times} time{'' if self.times == 1 else 's'}"

    def _key(self) -> tuple[object, ...]:
        return (self.times,)
