"""Conditions on the session rather than a task: Red Engine's ``env 'prod'``,
``param 'x' exists``, ``param 'x' is 'v'``, ``scheduler has more than 3 cycles``,
``scheduler started 10 minutes ago`` and ``scheduler has run over 10 minutes``.

They read the session's facts in the :class:`~.base.Context` (``parameters``, ``cycles``,
``started``). Parameters and the step count change without a run event, so the first three
kinds say :meth:`reads_outside` and the scheduler looks at them again every second.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from ..timetext import format_duration, to_timedelta
from .base import NO_PARAMETERS, BaseCondition, Context
from .time import quantize

__all__ = ["EnvIs", "ParamIs", "SchedulerCycles", "SchedulerStarted"]

_MISSING = object()


def _params(ctx: Context) -> Mapping[str, object]:
    params = ctx.parameters
    return NO_PARAMETERS if params is None else params


def _quote(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return "'" + value.replace("'", "''") + "'"


class _OutsideOnly(BaseCondition):
    """Changed by the session, not by the clock or a run event: due now if met, and looked
    at again every :data:`~.base.OUTSIDE_RECHECK` seconds."""

    __slots__ = ()

    def reads_outside(self) -> bool:
        return True

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        return ts if self.is_met(ctx) else None

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        return None if self.is_met(ctx) else ts


class EnvIs(_OutsideOnly):
    """``env 'prod'``: the session parameter ``env`` equals the name."""

    __slots__ = ("env",)

    def __init__(self, env: str) -> None:
        self.env = env

    def is_met(self, ctx: Context) -> bool:
        return bool(_params(ctx).get("env", _MISSING) == self.env)

    def __str__(self) -> str:
        return f"env {_quote(self.env)}"

    def _key(self) -> tuple[object, ...]:
        return (self.env,)


class ParamIs(_OutsideOnly):
    """``param 'x' exists`` / ``param 'x' is 'v'``: a session parameter is set (to that
    value: the text compares equal to the parameter's value, as in Red Engine)."""

    __slots__ = ("key", "value")

    def __init__(self, key: str, value: object = _MISSING) -> None:
        self.key = key
        self.value = value

    def is_met(self, ctx: Context) -> bool:
        found = _params(ctx).get(self.key, _MISSING)
        if found is _MISSING:
            return False
        return self.value is _MISSING or bool(found == self.value)

    def __str__(self) -> str:
        head = f"param {_quote(self.key)}"
        if self.value is _MISSING:
            return f"{head} exists"
        return f"{head} is {_quote(str(self.value))}"

    def _key(self) -> tuple[object, ...]:
        return (self.key, None if self.value is _MISSING else ("=", self.value))


_COMPARE = {"more than": int.__gt__, "less than": int.__lt__, "": int.__eq__}


class SchedulerCycles(_OutsideOnly):
    """``scheduler has more than 3 cycles`` (``less than``, or exactly ``has 3 cycles``):
    the number of scheduler steps taken since the session started."""

    __slots__ = ("count", "relation")

    def __init__(self, relation: str, count: int) -> None:
        if relation not in _COMPARE:
            raise ValueError(f"relation is 'more than', 'less than' or ''; got {relation!r}")
        if count < 0:
            raise ValueError(f"a number of cycles cannot be negative: {count}")
        self.relation = relation
        self.count = count

    def is_met(self, ctx: Context) -> bool:
        return bool(_COMPARE[self.relation](ctx.cycles, self.count))

    def __str__(self) -> str:
        rel = f"{self.relation} " if self.relation else ""
        return f"scheduler has {rel}{self.count} cycles"

    def _key(self) -> tuple[object, ...]:
        return (self.relation, self.count)


class SchedulerStarted(BaseCondition):
    """``scheduler started 10 minutes ago``: the scheduler's first step was within the
    last 10 minutes; ``scheduler has run over 10 minutes`` (``over=True``): it was longer
    ago than that. Neither is true before the first step."""

    __slots__ = ("over", "period", "seconds")

    def __init__(self, period: str | float | timedelta, over: bool = False) -> None:
        self.period = to_timedelta(period)
        self.seconds = self.period.total_seconds()
        if self.seconds <= 0:
            raise ValueError(f"needs a positive duration, got {format_duration(self.period)!r}")
        self.over = over

    def _met_at(self, ctx: Context, ts: float) -> bool:
        started = ctx.started
        if started is None:
            return False
        recent = ts - started <= self.seconds
        return not recent if self.over else recent

    def is_met(self, ctx: Context) -> bool:
        return self._met_at(ctx, ctx.ts)

    def _turn(self, ctx: Context) -> float | None:
        started = ctx.started
        return None if started is None else quantize(started + self.seconds)

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        if self._met_at(ctx, ts):
            return ts
        turn = self._turn(ctx)
        if turn is None or not self.over:
            return None  # 'started ... ago' only gets further away
        return turn if turn > ts else ts + 1e-6

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        if not self._met_at(ctx, ts):
            return ts
        turn = self._turn(ctx)
        if turn is None or self.over:
            return None
        return turn if turn > ts else ts + 1e-6

    def next_due(self, ctx: Context) -> datetime | None:
        return ctx.when(self._due_at(ctx, ctx.ts))

    def next_undue(self, ctx: Context) -> datetime | None:
        return ctx.when(self._undue_at(ctx, ctx.ts))

    def __str__(self) -> str:
        duration = format_duration(self.period)
        if self.over:
            return f"scheduler has run over {duration}"
        return f"scheduler started {duration} ago"

    def _key(self) -> tuple[object, ...]:
        return (self.seconds, self.over)
