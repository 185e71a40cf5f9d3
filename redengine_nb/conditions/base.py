"""Condition objects: the context they read, the base class, and ``&``, ``|``, ``~``.

A condition is a pure function of a :class:`Context` (now, the task it is attached to,
the run history). It answers two questions:

* :meth:`BaseCondition.is_met` — is it true now?
* :meth:`BaseCondition.next_due` — the earliest instant at or after now at which the
  clock alone could make it true (``None`` when only an event, such as a run finishing,
  can). The scheduler sleeps until the earliest of these over all tasks.

:meth:`BaseCondition.next_undue` is the mirror image (the earliest instant it could turn
false), which ``~`` needs. Both may err early (the scheduler then wakes, finds nothing
due and sleeps again) but never late.

Internally both are answered in epoch seconds by :meth:`BaseCondition._due_at` and
:meth:`BaseCondition._undue_at` ("as if the clock read ``ts``"), so that a compound's
look-ahead neither builds a :class:`Context` nor a ``datetime`` per step; the one
conversion back to a ``datetime`` happens at the edge, in ``next_due``/``next_undue``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from types import MappingProxyType
from typing import Any as _Any
from zoneinfo import ZoneInfo

from ..runlog.base import History

__all__ = ["OUTSIDE_RECHECK", "All", "Any", "BaseCondition", "Context", "Not", "false", "true"]

#: Seconds between two looks at a condition that reads the world outside the scheduler.
OUTSIDE_RECHECK = 1.0

# A compound's next_due is found by iterating to a fixed point; this bounds the loop.
# When it does not settle, the last candidate is returned: an early wake-up, never a late one.
_MAX_ROUNDS = 64

# ``datetime.fromtimestamp(ts, tz)`` costs about a microsecond with a ZoneInfo; the answers
# of next_due repeat from tick to tick, so the conversion is memoised. A pure function of
# (ts, tz): it cannot go stale. Bounded by clearing.
_DT_CACHE: dict[tuple[float, tzinfo | None], datetime] = {}
_DT_CACHE_SIZE = 512


def to_datetime(ts: float, tz: tzinfo | None) -> datetime:
    """``datetime.fromtimestamp(ts, tz)``, memoised."""
    key = (ts, tz)
    try:
        got = _DT_CACHE.get(key)
    except TypeError:  # a tzinfo that cannot be hashed: no memo
        return datetime.fromtimestamp(ts, tz)
    if got is None:
        got = datetime.fromtimestamp(ts, tz)
        if len(_DT_CACHE) >= _DT_CACHE_SIZE:
            _DT_CACHE.clear()
        _DT_CACHE[key] = got
    return got


# The last ``now`` a Context converted and its epoch seconds. The datetime is kept alive
# here, so an identical object cannot be a new one with the same id.
_LAST_NOW: tuple[datetime | None, float] = (None, 0.0)


def _never_running(_task: str) -> bool:
    return False


#: What a context without a session's parameters reads.
NO_PARAMETERS: Mapping[str, _Any] = MappingProxyType({})


@dataclass(slots=True)
class Context:
    """Everything a condition may look at.

    ``parameters``, ``cycles`` and ``started`` are the session's facts that Red Engine's
    ``env 'prod'``, ``param 'x' is 'v'`` and ``scheduler has ...`` phrases read: the
    session's parameters (the same mapping ``Arg('x')`` reads), how many scheduler steps
    have run, and when the first one ran (epoch seconds; ``None`` before that).
    """

    now: datetime
    history: History
    task: str | None = None
    is_running: Callable[[str], bool] = field(default=_never_running)
    ts: float = 0.0
    parameters: Mapping[str, _Any] | None = None
    cycles: int = 0
    started: float | None = None

    def __post_init__(self) -> None:
        global _LAST_NOW
        now = self.now
        last = _LAST_NOW
        if now is last[0]:  # one step builds a context per task at the same instant
            self.ts = last[1]
            return
        if now.tzinfo is None:
            raise ValueError("Context.now must be timezone-aware")
        self.ts = now.timestamp()
        _LAST_NOW = (now, self.ts)  # one assignment: safe across threads

    @property
    def tz(self) -> ZoneInfo:
        tz = self.now.tzinfo
        assert isinstance(tz, ZoneInfo)
        return tz

    def at(self, when: datetime) -> Context:
        """The same context at another instant (for looking ahead)."""
        return self._copy(when.astimezone(self.now.tzinfo))

    def at_ts(self, ts: float) -> Context:
        """The same context at epoch seconds ``ts`` (``self`` when that is now)."""
        if ts == self.ts:
            return self
        return self._copy(to_datetime(ts, self.now.tzinfo))

    def _copy(self, now: datetime) -> Context:
        return Context(
            now,
            self.history,
            self.task,
            self.is_running,
            parameters=self.parameters,
            cycles=self.cycles,
            started=self.started,
        )

    def when(self, ts: float | None) -> datetime | None:
        """Epoch seconds as an instant in this context's zone (``now`` itself for now)."""
        if ts is None:
            return None
        if ts == self.ts:
            return self.now
        return to_datetime(ts, self.now.tzinfo)

    def task_name(self, explicit: str | None) -> str:
        """The task a status condition is about: the named one, else the one being checked."""
        name = explicit if explicit is not None else self.task
        if name is None:
            raise ValueError(
                "this condition needs a task: name one (task 'x') or attach the condition to a task"
            )
        return name


class BaseCondition(ABC):
    """Base of every condition. Subclasses are immutable and compare by value."""

    __slots__ = ()

    @abstractmethod
    def is_met(self, ctx: Context) -> bool:
        """True when the condition holds at ``ctx.now``."""

    def next_due(self, ctx: Context) -> datetime | None:
        """Earliest instant ≥ now it can be true by the clock alone; ``None``: only an event."""
        return ctx.now if self.is_met(ctx) else None

    def next_undue(self, ctx: Context) -> datetime | None:
        """Earliest instant ≥ now it can be false by the clock alone; ``None``: only an event."""
        return None if self.is_met(ctx) else ctx.now

    # -- the same in epoch seconds, as if the clock read ``ts`` (``ts >= ctx.ts``) --------
    # Subclasses that can answer without a datetime override these (and define
    # next_due/next_undue through them); the defaults go through next_due/next_undue, so a
    # condition written against the public methods alone still works inside compounds.
    def _due_at(self, ctx: Context, ts: float) -> float | None:
        due = self.next_due(ctx.at_ts(ts))
        return None if due is None else due.timestamp()

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        due = self.next_undue(ctx.at_ts(ts))
        return None if due is None else due.timestamp()

    def clock_free(self) -> bool:
        """True when the clock plays no part: ``_due_at``/``_undue_at`` answer ``ts`` or
        ``None`` for every ``ts`` alike (only events change the answer)."""
        return False

    def reads_outside(self) -> bool:
        """True when the answer also depends on the world outside the scheduler (a custom
        phrase reading a file, say): neither the clock nor an event announces its change,
        so the scheduler looks again every :data:`OUTSIDE_RECHECK` seconds."""
        return False

    # -- value semantics -------------------------------------------------------------
    def _key(self) -> tuple[object, ...]:
        """What makes two conditions of the same class equal (and their hash)."""
        raise NotImplementedError(f"{type(self).__name__} defines no _key()")

    def _family(self) -> type:
        """The class that defines ``_key``: its subclasses (fluent API forms) compare equal
        to it by value."""
        return next(k for k in type(self).__mro__ if "_key" in vars(k))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BaseCondition)
            and other._family() is self._family()
            and other._key() == self._key()
        )

    def __hash__(self) -> int:
        return hash((self._family(), *self._key()))

    # -- algebra ---------------------------------------------------------------------
    def __and__(self, other: BaseCondition) -> BaseCondition:
        if not isinstance(other, BaseCondition):
            return NotImplemented
        return All.of(self, other)

    def __or__(self, other: BaseCondition) -> BaseCondition:
        if not isinstance(other, BaseCondition):
            return NotImplemented
        return Any.of(self, other)

    def __invert__(self) -> BaseCondition:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a condition has no truth value of its own; evaluate it with "
            "cond.is_met(ctx), and combine conditions with &, | and ~ (not 'and', 'or', 'not')"
        )

    def __repr__(self) -> str:
        return f"<condition {self}>"

    #: Binding strength, for printing parentheses only where needed.
    precedence: int = 3


class _Constant(BaseCondition):
    __slots__ = ("_value",)

    def __init__(self, value: bool) -> None:
        self._value = value

    def is_met(self, ctx: Context) -> bool:
        return self._value

    def next_due(self, ctx: Context) -> datetime | None:
        return ctx.now if self._value else None

    def next_undue(self, ctx: Context) -> datetime | None:
        return None if self._value else ctx.now

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        return ts if self._value else None

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        return None if self._value else ts

    def clock_free(self) -> bool:
        return True

    def __str__(self) -> str:
        return "true" if self._value else "false"

    def _key(self) -> tuple[object, ...]:
        return (self._value,)


true: BaseCondition = _Constant(True)
false: BaseCondition = _Constant(False)


def _fixed_point(cond: _Compound, ctx: Context, ts: float, undue: bool = False) -> float | None:
    """Earliest t ≥ ts where every part answers t itself (epoch seconds): the parts'
    ``_due_at`` (or ``_undue_at`` when ``undue``).

    Rounds: every part is asked at t; t moves to the latest answer; it is settled when a
    round moves nothing. Each answer is ≥ t and no part is true before its answer, so a
    round never jumps over an instant where all parts are true. A part the clock plays no
    part in (``clock_free``) answered t in the first round and would answer any later t
    the same way, so later rounds skip it.
    """
    t = ts
    parts = cond.parts
    for _ in range(_MAX_ROUNDS):
        latest = t
        for part in parts:
            due = part._undue_at(ctx, t) if undue else part._due_at(ctx, t)
            if due is None:
                return None
            if due > latest:
                latest = due
        if latest == t:
            return t
        t = latest
        parts = cond.timed
    return t


def _earliest(cond: _Compound, ctx: Context, ts: float, undue: bool = False) -> float | None:
    """The earliest answer of any part."""
    best: float | None = None
    for part in cond.parts:
        due = part._undue_at(ctx, ts) if undue else part._due_at(ctx, ts)
        if due is not None and (best is None or due < best):
            best = due
    return best


class _Compound(BaseCondition):
    __slots__ = ("parts", "timed")
    symbol = ""

    def __init__(self, parts: Iterable[BaseCondition]) -> None:
        self.parts: tuple[BaseCondition, ...] = tuple(parts)
        if len(self.parts) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two conditions")
        #: The parts whose answer depends on the clock.
        self.timed: tuple[BaseCondition, ...] = tuple(p for p in self.parts if not p.clock_free())

    def clock_free(self) -> bool:
        return not self.timed

    def reads_outside(self) -> bool:
        return any(part.reads_outside() for part in self.parts)

    @classmethod
    def of(cls, *conds: BaseCondition) -> BaseCondition:
        flat: list[BaseCondition] = []
        for cond in conds:
            if type(cond) is cls:
                flat.extend(cond.parts)
            else:
                flat.append(cond)
        return cls(flat)

    def __str__(self) -> str:
        texts = []
        for part in self.parts:
            text = str(part)
            texts.append(f"({text})" if part.precedence < self.precedence else text)
        return f" {self.symbol} ".join(texts)

    def _key(self) -> tuple[object, ...]:
        return self.parts

    def _family(self) -> type:
        # The key lives here, on the shared base, but ``a & b`` is not ``a | b``.
        return type(self)


class All(_Compound):
    """True when every part is true (``a & b``)."""

    __slots__ = ()
    symbol = "&"
    precedence = 2

    def is_met(self, ctx: Context) -> bool:
        return all(part.is_met(ctx) for part in self.parts)

    def next_due(self, ctx: Context) -> datetime | None:
        return ctx.when(_fixed_point(self, ctx, ctx.ts))

    def next_undue(self, ctx: Context) -> datetime | None:
        return ctx.when(_earliest(self, ctx, ctx.ts, undue=True))

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        return _fixed_point(self, ctx, ts)

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        return _earliest(self, ctx, ts, undue=True)


class Any(_Compound):
    """True when at least one part is true (``a | b``)."""

    __slots__ = ()
    symbol = "|"
    precedence = 1

    def is_met(self, ctx: Context) -> bool:
        return any(part.is_met(ctx) for part in self.parts)

    def next_due(self, ctx: Context) -> datetime | None:
        return ctx.when(_earliest(self, ctx, ctx.ts))

    def next_undue(self, ctx: Context) -> datetime | None:
        return ctx.when(_fixed_point(self, ctx, ctx.ts, undue=True))

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        return _earliest(self, ctx, ts)

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        return _fixed_point(self, ctx, ts, undue=True)


class Not(BaseCondition):
    """True when its part is false (``~a``)."""

    __slots__ = ("part",)
    precedence = 3

    def __init__(self, part: BaseCondition) -> None:
        self.part = part

    def is_met(self, ctx: Context) -> bool:
        return not self.part.is_met(ctx)

    def next_due(self, ctx: Context) -> datetime | None:
        return self.part.next_undue(ctx)

    def next_undue(self, ctx: Context) -> datetime | None:
        return self.part.next_due(ctx)

    def clock_free(self) -> bool:
        return self.part.clock_free()

    def reads_outside(self) -> bool:
        return self.part.reads_outside()

    def _due_at(self, ctx: Context, ts: float) -> float | None:
        return self.part._undue_at(ctx, ts)

    def _undue_at(self, ctx: Context, ts: float) -> float | None:
        return self.part._due_at(ctx, ts)

    def __invert__(self) -> BaseCondition:
        return self.part

    def __str__(self) -> str:
        text = str(self.part)
        return f"~({text})" if self.part.precedence < 3 else f"~{text}"

    def _key(self) -> tuple[object, ...]:
        return (self.part,)
