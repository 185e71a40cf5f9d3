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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from ..runlog.base import History

__all__ = ["All", "Any", "BaseCondition", "Context", "Not", "false", "true"]

# A compound's next_due is found by iterating to a fixed point; this bounds the loop.
# When it does not settle, the last candidate is returned: an early wake-up, never a late one.
_MAX_ROUNDS = 64


def _never_running(_task: str) -> bool:
    return False


@dataclass(slots=True)
class Context:
    """Everything a condition may look at."""

    now: datetime
    history: History
    task: str | None = None
    is_running: Callable[[str], bool] = field(default=_never_running)
    ts: float = 0.0

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("Context.now must be timezone-aware")
        self.ts = self.now.timestamp()

    @property
    def tz(self) -> ZoneInfo:
        tz = self.now.tzinfo
        assert isinstance(tz, ZoneInfo)
        return tz

    def at(self, when: datetime) -> Context:
        """The same context at another instant (for looking ahead)."""
        return Context(when.astimezone(self.now.tzinfo), self.history, self.task, self.is_running)

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

    def __str__(self) -> str:
        return "true" if self._value else "false"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Constant) and other._value == self._value

    def __hash__(self) -> int:
        return hash((_Constant, self._value))


true: BaseCondition = _Constant(True)
false: BaseCondition = _Constant(False)


def _fixed_point(
    parts: tuple[BaseCondition, ...],
    ctx: Context,
    step: Callable[[BaseCondition, Context], datetime | None],
) -> datetime | None:
    """Earliest t ≥ now where ``step(part, ctx@t) == t`` for every part."""
    # Compared by timestamp: same-zone datetimes compare by wall time (wrong in a DST fold).
    t = ctx.now
    cur = ctx
    for _ in range(_MAX_ROUNDS):
        latest, latest_ts = t, t.timestamp()
        for part in parts:
            due = step(part, cur)
            if due is None:
                return None
            if due.timestamp() > latest_ts:
                latest, latest_ts = due, due.timestamp()
        if latest is t:
            return t
        t = latest
        cur = ctx.at(t)
    return t


def _ts(when: datetime) -> float:
    return when.timestamp()


class _Compound(BaseCondition):
    __slots__ = ("parts",)
    symbol = ""

    def __init__(self, parts: Iterable[BaseCondition]) -> None:
        self.parts: tuple[BaseCondition, ...] = tuple(parts)
        if len(self.parts) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two conditions")

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

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash((type(self), self.parts))


class All(_Compound):
    """True when every part is true (``a & b``)."""

    __slots__ = ()
    symbol = "&"
    precedence = 2

    def is_met(self, ctx: Context) -> bool:
        return all(part.is_met(ctx) for part in self.parts)

    def next_due(self, ctx: Context) -> datetime | None:
        return _fixed_point(self.parts, ctx, lambda part, c: part.next_due(c))

    def next_undue(self, ctx: Context) -> datetime | None:
        dues = [d for d in (part.next_undue(ctx) for part in self.parts) if d is not None]
        return min(dues, key=_ts) if dues else None


class Any(_Compound):
    """True when at least one part is true (``a | b``)."""

    __slots__ = ()
    symbol = "|"
    precedence = 1

    def is_met(self, ctx: Context) -> bool:
        return any(part.is_met(ctx) for part in self.parts)

    def next_due(self, ctx: Context) -> datetime | None:
        dues = [d for d in (part.next_due(ctx) for part in self.parts) if d is not None]
        return min(dues, key=_ts) if dues else None

    def next_undue(self, ctx: Context) -> datetime | None:
        return _fixed_point(self.parts, ctx, lambda part, c: part.next_undue(c))


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

    def __invert__(self) -> BaseCondition:
        return self.part

    def __str__(self) -> str:
        text = str(self.part)
        return f"~({text})" if self.part.precedence < 3 else f"~{text}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Not) and other.part == self.part

    def __hash__(self) -> int:
        return hash((Not, self.part))
